/**
 * What a command pool's `provision` command prints (docs/api.md describes the contract): one JSON
 * object a line, `hostname` and `ip` required, `ssh-port` and `data` optional.
 */
import { HOSTNAME_PATTERN } from '../api/patterns.js';

/** A machine as provision printed it. */
export interface ProvisionedMachine {
  hostname: string;
  ip: string;
  sshPort: number | null;
  data: unknown;
}


/** Reads provision's output: the machines, and a problem for each line that is not one. */
export function parseProvisionOutput(stdout: string): { nodes: ProvisionedMachine[]; problems: string[] } {
  const nodes: ProvisionedMachine[] = [];
  const problems: string[] = [];
  stdout.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '') return;
    const where = `line ${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      problems.push(`${where}: not JSON (expected {"hostname": ..., "ip": ..., "data": ...})`);
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${where}: expected a JSON object with hostname and ip`);
      return;
    }
    const { hostname, ip, data } = value as Record<string, unknown>;
    const sshPort = (value as Record<string, unknown>)['ssh-port'];
    if (typeof hostname !== 'string' || !HOSTNAME_PATTERN.test(hostname)) {
      problems.push(`${where}: hostname must be a string of letters, digits, '.', '-', '_'`);
    } else if (typeof ip !== 'string' || ip === '') {
      problems.push(`${where}: ip must be a non-empty string (node ${hostname})`);
    } else if (sshPort !== undefined && !(Number.isInteger(sshPort) && (sshPort as number) >= 1 && (sshPort as number) <= 65535)) {
      problems.push(`${where}: ssh-port must be a port number (node ${hostname})`);
    } else {
      nodes.push({ hostname, ip, sshPort: (sshPort as number | undefined) ?? null, data: data ?? null });
    }
  });
  return { nodes, problems };
}
