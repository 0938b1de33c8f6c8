/**
 * The legacy bodies that clients of admin.ci recognise by their exact text (docs/api.md,
 * "Errors" and the legacy calls). The server writes them and the client matches them, so both
 * read them here; changing one of these strings breaks `cico` and existing scripts.
 */

/** 403: no key, or a key no project has. */
export const INVALID_KEY_MESSAGE = 'Invalid duffy key';
/** 403: an unknown, foreign or malformed session reference. */
export const INVALID_SESSION_MESSAGE = 'Invalid session ID';
/** 503 text/plain (never JSON: cico retries only a body that is not JSON): not enough ready nodes now. */
export const CAPACITY_MESSAGE = 'Insufficient Nodes in READY State';
/** `/Node/done` without `node` on a session that is already done. */
export const NOT_IN_PROD_MESSAGE = 'Session not in Prod';
/** 403: the project holds as many failed nodes as it may. */
export const FAILED_NODE_LIMIT_MESSAGE = 'Exceeded maximum allowed fail nodes limit, please release other machines to continue';

/** The success answer of `/Node/done`, `/Node/fail` and `/Session/done`, as the JSON string it is sent as. */
export const DONE_MESSAGE = 'Done';
/** DONE_MESSAGE as the body goes over the wire: a JSON string, quotes included. */
export const DONE_BODY = JSON.stringify(DONE_MESSAGE);

/** The User-Agent python-cicoclient (`cico`) sends: its `/Node/get` errors get a JSON string body (docs/api.md, "cico"). */
export const CICO_USER_AGENT = 'python-cicoclient-wrapper';
