export const OPENAPI_DOCUMENT = {};
