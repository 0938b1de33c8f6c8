/**
 * The wire contract of SPEC.md: the success bodies of the API, as the server writes them and the
 * client reads them. Types only, so both sides share them without sharing code.
 */

export interface NodeGetResult {
  hosts: string[];
  ssid: string;
}

export interface SessionGetResult {
  ssid: string;
  alias: string | null;
  hosts: string[];
  expires_at: string | null;
  created: boolean;
}

export interface HostView {
  hostname: string;
  ip: string | null;
  state: string;
  ver: string;
  arch: string;
  flavor: string | null;
}

export interface SessionView {
  ssid: string;
  alias: string | null;
  state: 'active' | 'done';
  created_at: string;
  expires_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  hosts: HostView[];
}

/** A keyed `/Inventory` row: `[hostname, ssid]`. */
export type KeyedInventoryRow = [hostname: string, ssid: string];

/** An unkeyed `/Inventory` row: the 14 legacy fields. */
export type InventoryRow = [
  id: number,
  hostname: string,
  ip: string | null,
  chassis: string | null,
  used_count: number,
  state: string,
  comment: string | null,
  distro: string | null,
  rel: string | null,
  ver: string,
  arch: string,
  pool: number,
  console_port: number | null,
  flavor: string | null,
];
