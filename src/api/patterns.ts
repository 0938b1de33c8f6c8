/**
 * The grammar of the names that travel on the wire (docs/api.md, "General rules"): aliases,
 * hostnames and the ver/arch/flavor labels. The server refuses what does not match; the action
 * and the CLI check the same patterns before asking.
 */

/** An alias is at most this long; so is anything a client may pass as `ssid=` (ssid or alias). */
export const ALIAS_MAX_LENGTH = 128;
/** The characters an alias may hold, at any length (the action shortens a long one itself). */
export const ALIAS_CHARACTERS = /^[A-Za-z0-9._:/@-]+$/;
/** A whole alias: 1 to ALIAS_MAX_LENGTH of ALIAS_CHARACTERS. */
export const ALIAS_PATTERN = /^[A-Za-z0-9._:/@-]{1,128}$/;
export const ALIAS_HELP = '1 to 128 characters of A-Z a-z 0-9 . _ - : / @';

/** A hostname is at most this long (DNS). */
export const HOSTNAME_MAX_LENGTH = 253;
/** The characters a hostname may hold, at any length. */
export const HOSTNAME_CHARACTERS = /^[A-Za-z0-9._-]+$/;
/** A whole hostname: 1 to HOSTNAME_MAX_LENGTH of HOSTNAME_CHARACTERS. */
export const HOSTNAME_PATTERN = /^[A-Za-z0-9._-]{1,253}$/;
export const HOSTNAME_HELP = "letters, digits, '.', '_' and '-', at most 253";

/** `ver`, `arch` and `flavor` of a request: names a pool is chosen by. */
export const LABEL_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
export const LABEL_HELP = "1 to 64 letters, digits, '.', '_' or '-'";
