/**
 * The action's pre step (action.yml runs dist/pre/index.js, this file bundled). Run with
 * KEEPER_ARGUMENT, the same bundle is the keeper process that pre starts (keeper.ts).
 */
import { KEEPER_ARGUMENT } from './constants.js';
import { runKeeper } from './keeper.js';
import { runPre } from './pre-impl.js';
import { launch } from './runtime.js';

if (process.argv[2] === KEEPER_ARGUMENT) {
  // Exits at once: a request or socket the stop left behind must not keep the keeper around.
  void runKeeper().then((code) => process.exit(code));
} else {
  launch(runPre);
}
