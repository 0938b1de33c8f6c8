/**
 * The shape of cinode.yaml as zod schemas. Each setting is checked and converted on its own (a
 * duration to milliseconds, a key to its hash), with messages written for the person who edits the
 * file. Checks that span several settings (uniqueness, lifetime limits) live in config.ts.
 */
import { z } from 'zod';
import { DURATION_HELP, parseDuration, parseLifetime, type Lifetime } from '../api/duration.js';
import { HOSTNAME_CHARACTERS, HOSTNAME_MAX_LENGTH } from '../api/patterns.js';
import { hashKey } from '../core/catalog.js';


/** A value as a message quotes it; long strings are cut so one bad value cannot flood the output. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object' && value !== null) return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

/** Why a value was refused; a converter returns one instead of throwing. */
class Refusal {
  constructor(readonly message: string) {}
}

/**
 * One setting: `convert` turns the YAML value into what cinode uses, or refuses it. The message of
 * a missing setting is the same everywhere; optional settings put `.optional()` or `.default()`
 * in front, which answer for a missing value before `convert` sees it.
 */
function setting<T>(convert: (value: unknown) => T | Refusal) {
  return z.unknown().transform((value, ctx): T => {
    const out = value === undefined ? new Refusal('is required') : convert(value);
    if (out instanceof Refusal) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: out.message });
      return z.NEVER;
    }
    return out;
  });
}

/** A setting of one kind; the message says what was expected and (unless secret) what was found. */
function expecting<T>(what: string, convert: (value: unknown) => T | undefined, secret = false) {
  return setting((value) => {
    const out = convert(value);
    return out !== undefined ? out : new Refusal(secret ? `expected ${what}` : `expected ${what}, got ${show(value)}`);
  });
}

const ifString = <T>(value: unknown, convert: (text: string) => T | undefined): T | undefined =>
  typeof value === 'string' ? convert(value) : undefined;

function wholeNumber(min: number, max?: number) {
  const what = max === undefined ? `a whole number >= ${min}` : `a whole number from ${min} to ${max}`;
  return expecting(what, (v) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= min && (max === undefined || v <= max) ? v : undefined,
  );
}

const boolean = expecting('true or false', (v) => (typeof v === 'boolean' ? v : undefined));
const text = expecting('a non-empty string', (v) => (typeof v === 'string' && v !== '' ? v : undefined));
const duration = expecting(DURATION_HELP, (v) => ifString(v, parseDuration));
const lifetime = expecting<Lifetime>(`"never" or ${DURATION_HELP}`, (v) => ifString(v, parseLifetime));

/** The longest a `/Node/get` may wait for capacity (docs/api.md, "Waiting for capacity"). */
export const WAIT_LIMIT_MS = 86_400_000;
/** A wait: 0 (do not wait) or a duration up to a day. */
const wait = (zero: boolean) =>
  expecting(`${zero ? '0 or ' : ''}a duration from 1s to 1d, ${DURATION_HELP}`, (v) => {
    if (zero && (v === 0 || v === '0' || v === '0s')) return 0;
    const ms = ifString(v, parseDuration);
    return ms !== undefined && ms <= WAIT_LIMIT_MS ? ms : undefined;
  });

/** `N/DURATION`: at most N new sessions in any window of DURATION. */
const rateLimit = expecting(`N/DURATION such as 5/5m (N a whole number from 1 to 999999, DURATION ${DURATION_HELP})`, (v) =>
  ifString(v, (s) => {
    const match = /^(\d{1,6})\/(.+)$/.exec(s);
    const sessions = Number(match?.[1]);
    const windowMs = parseDuration(match?.[2] ?? '');
    return match && sessions >= 1 && windowMs !== undefined ? { sessions, windowMs } : undefined;
  }),
);

/** YAML reads `ver: 7` as a number; a version is a string to cinode. */
const version = expecting('a version such as "9-stream" or 8.5', (v) =>
  (typeof v === 'string' && v !== '') || (typeof v === 'number' && Number.isFinite(v)) ? String(v) : undefined,
);

function name(maxLength: number) {
  const pattern = new RegExp(`^[A-Za-z0-9._-]{1,${maxLength}}$`);
  return setting((v) =>
    typeof v === 'string' && pattern.test(v)
      ? v
      : new Refusal(`${show(v)} is not a valid name (1 to ${maxLength} letters, digits, '.', '_', '-')`),
  );
}

const hostname = setting((v) => {
  if (typeof v !== 'string' || !HOSTNAME_CHARACTERS.test(v)) {
    return new Refusal(`${show(v)} is not a valid hostname (letters, digits, '.', '-', '_')`);
  }
  return v.length <= HOSTNAME_MAX_LENGTH ? v : new Refusal(`${show(v)} is too long for a hostname (at most ${HOSTNAME_MAX_LENGTH} characters)`);
});

/** `host:port`, or `[v6-address]:port`; the brackets are dropped from the host. */
const listen = expecting('host:port such as 127.0.0.1:8080 or [::1]:8080 (port from 0 to 65535)', (v) =>
  ifString(v, (s) => {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(s);
    const port = Number(match?.[3]);
    const host = match?.[1] ?? match?.[2];
    return host !== undefined && port <= 65535 ? { host, port } : undefined;
  }),
);

/** Secret: a PostgreSQL URL may carry a password, so the value is never quoted back. */
const database = expecting(
  'sqlite:PATH or a postgres:// URL',
  (v) => ifString(v, (s) => (/^(?:sqlite:|postgres:\/\/|postgresql:\/\/)./.test(s) ? s : undefined)),
  true,
);

/** Secret: only the hash leaves this schema, and no message quotes the key. */
const apiKey = expecting('a key of at least 16 characters', (v) => ifString(v, (s) => (s.length >= 16 ? hashKey(s) : undefined)), true);
const keySha256 = expecting(
  '64 lowercase hexadecimal digits (the SHA-256 of the key)',
  (v) => ifString(v, (s) => (/^[0-9a-f]{64}$/.test(s) ? s : undefined)),
  true,
);

/**
 * A mapping with exactly these keys. A key outside them is reported at the key itself, so a typo
 * never passes silently; zod's own strict mode would report it at the enclosing mapping.
 */
function strictObject<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape);
  return z.preprocess((value, ctx) => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      for (const key of Object.keys(value)) {
        if (!known.includes(key)) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, path: [key], message: `unknown key (expected one of: ${known.join(', ')})` });
        }
      }
    }
    return value;
  }, z.object(shape));
}

/** Messages for the checks zod makes itself: the shape of mappings and lists. */
export const errorMap: z.ZodErrorMap = (issue, ctx) => {
  if (issue.code === z.ZodIssueCode.invalid_type) {
    if (issue.received === z.ZodParsedType.undefined) return { message: 'is required' };
    const kinds: Partial<Record<string, string>> = { object: 'a mapping', array: 'a list' };
    return { message: `expected ${kinds[issue.expected] ?? issue.expected}, got ${show(ctx.data)}` };
  }
  return { message: ctx.defaultError };
};

/** The settings `defaults` gives every project, and that a project may override. */
const policy = {
  'session-lifetime': lifetime.default('6h'),
  'session-lifetime-max': lifetime.default('12h'),
  'never-expire': boolean.default(false),
  'fail-hold': duration.default('12h'),
  'node-quota': wholeNumber(0).default(10),
  'max-failed-nodes': wholeNumber(0).default(5),
  'rate-limit': rateLimit.default('5/5m'),
  'max-count': wholeNumber(1, 10_000).default(50),
  'max-wait': wait(false).default('1h'),
  'default-wait': wait(true).default('0s'),
  admin: boolean.default(false),
};
export type PolicyKey = keyof typeof policy;

export const defaultsSchema = strictObject({
  ver: version.default('7'),
  arch: text.default('x86_64'),
  /** The flavor a request for an architecture gets when it names none. */
  'default-flavor': z.record(text).default({ aarch64: 'tiny', ppc64le: 'tiny' }),
  ...policy,
});

/** The key type a public key blob names first (an SSH string: 4-byte length, then the text); undefined if none. */
function blobKeyType(base64: string): string | undefined {
  const blob = Buffer.from(base64, 'base64');
  if (blob.length < 4) return undefined;
  const end = 4 + blob.readUInt32BE(0);
  return end <= blob.length ? blob.toString('latin1', 4, end) : undefined;
}

/**
 * One line of an authorized_keys file: `TYPE BASE64 [COMMENT]`, as `ssh-keygen` writes a public
 * key. The blob starts with the type again: checking it catches a mangled or wrong paste here,
 * rather than as a project that cannot log in to its nodes. No line break or NUL anywhere: a key
 * must never add lines of its own to authorized_keys.
 */
const sshPublicKey = expecting('an OpenSSH public key such as "ssh-ed25519 AAAA... user@host" (one line)', (v) =>
  ifString(v, (s) => {
    const match = /^((?:ssh|ecdsa-sha2|sk)-[A-Za-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?: [^\0\r\n]*)?$/.exec(s);
    if (!match) return undefined;
    const [, type, base64 = ''] = match;
    return base64.length % 4 === 0 && blobKeyType(base64) === type ? s : undefined;
  }),
);

export const projectSchema = strictObject({
  name: name(64),
  key: apiKey.optional(),
  'key-sha256': keySha256.optional(),
  'ssh-keys': z.array(sshPublicKey).default([]),
  // partial() puts optional() in front of each default: a setting the project leaves out stays
  // unset here and is inherited from `defaults`, not from the built-in value.
  ...z.object(policy).partial().shape,
});

const nodeSchema = strictObject({
  hostname,
  ip: text.optional(),
  chassis: text.optional(),
  'console-port': wholeNumber(1, 65535).optional(),
  'ssh-port': wholeNumber(1, 65535).optional(),
});

/** A command as an argv list (no shell): the program, then its arguments. */
const argv = z.array(text).min(1, 'expected the command and its arguments as a list, such as [./reinstall.sh, --fast]');

const mechanism = expecting('static or command', (v) => (v === 'static' || v === 'command' ? v : undefined));

export const poolSchema = strictObject({
  name: name(128),
  ver: version,
  arch: text,
  flavor: text.nullable().default(null),
  mechanism: mechanism.default('static'),
  // static: listed nodes, reset after use by `reclaim` (none, or null: straight back to ready).
  reclaim: argv.nullable().default(null),
  'reclaim-timeout': duration.default('30m'),
  nodes: z.array(nodeSchema).default([]),
  // command: nodes made by `provision` and destroyed by `deprovision`; config.ts checks which
  // settings belong to which mechanism.
  provision: argv.optional(),
  deprovision: argv.optional(),
  'command-timeout': duration.default('15m'),
  'ready-min': wholeNumber(0).default(0),
  'max-nodes': wholeNumber(1).optional(),
  'max-parallel': wholeNumber(1).default(1),
  'max-ready-age': duration.optional(),
});

/** How cinode logs into a node to put a project's SSH keys on it (and take them off again). */
export const contextualizeSchema = strictObject({
  user: text.default('root'),
  'private-key': text,
  port: wholeNumber(1, 65535).default(22),
  'authorized-keys': text.default('.ssh/authorized_keys'),
  /** `ignore`, or a known_hosts file that node host keys are checked against. */
  'known-hosts': text.default('ignore'),
  timeout: duration.default('30s'),
});

/**
 * Session isolation hooks (docs/api.md, "Session isolation"): each an argv list, each optional;
 * `timeout` bounds every run of any of them.
 */
export const isolationSchema = strictObject({
  'session-setup': argv.optional(),
  'session-teardown': argv.optional(),
  'node-attach': argv.optional(),
  'node-detach': argv.optional(),
  timeout: duration.default('2m'),
});

/**
 * The top level. `defaults`, `projects` and `pools` are only required to have the right outline
 * here: config.ts checks them piece by piece, so a problem in one place cannot hide the others.
 */
export const topSchema = strictObject({
  listen: listen.default('127.0.0.1:8080'),
  database: database.default('sqlite:var/cinode.db'),
  'reaper-interval': duration.default('30s'),
  /** How long the event history keeps each event; `never`: for ever. */
  'event-retention': lifetime.default('90d'),
  'public-inventory': boolean.default(true),
  'reclaim-parallel': wholeNumber(1, 256).default(4),
  /** `GET /metrics`: open to any scraper unless `key-required` (then an admin project's key). */
  metrics: strictObject({ 'key-required': boolean.default(false) }).default({}),
  contextualize: z.unknown(),
  isolation: z.unknown(),
  defaults: z.unknown(),
  projects: z.array(z.unknown()),
  pools: z.array(z.unknown()),
});
