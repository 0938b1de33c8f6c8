/**
 * `cinode serve`: runs the allocation backend until SIGTERM or SIGINT; SIGHUP reloads the
 * configuration.
 */
import { destination as logDestination, pino } from 'pino';
import { checkConfiguration, startFailure, startServer } from '../main/server.js';
import { resolveConfigPath } from './config-path.js';

export interface ServeOptions {
  config?: string;
  listen?: string;
  /** pino's level: main.ts offers the choices. */
  logLevel?: string;
}

/**
 * `cinode config check [FILE]`: every problem on stderr and exit 2, or one line saying what the
 * file declares and exit 0. FILE is found as `serve` finds it.
 */
export function configCheck(file: string | undefined): void {
  const { valid, report } = checkConfiguration(resolveConfigPath(file, process.env));
  if (valid) {
    process.stdout.write(`${report}\n`);
  } else {
    process.stderr.write(`${report}\n`);
    process.exitCode = 2;
  }
}

function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`--listen: ${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:8080)`);
  return { host: (match[1] ?? match[2])!, port };
}

export async function serve(options: ServeOptions): Promise<void> {
  // Asynchronous writes keep the request log off the request's path; flushed before exit.
  const destination = logDestination({ dest: 1, sync: false });
  const logger = pino({ base: { service: 'cinode' }, level: options.logLevel ?? 'info' }, destination);
  const configPath = resolveConfigPath(options.config, process.env);
  let server;
  try {
    server = await startServer({
      configPath,
      logger,
      listen: options.listen ? parseListen(options.listen) : undefined,
    });
  } catch (error) {
    process.stderr.write(`cinode: ${startFailure(error)}\n`);
    process.exitCode = 2;
    return;
  }
  process.stderr.write(`cinode listening on ${server.url}\n`);
  const running = server;
  const exit = (code: number) => {
    destination.flushSync();
    process.exit(code);
  };
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    running.close().then(
      () => exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  // reload() logs its own failures and never rejects; the catch is there so that no promise is
  // ever left unhandled, which would end the process.
  process.on('SIGHUP', () => {
    running.reload().catch((error: unknown) => logger.error({ err: error }, 'configuration reload failed'));
  });
}
