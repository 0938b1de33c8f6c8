/** The action's pre step (action.yml runs dist/pre/index.js, this file bundled). */
import { runPre } from './pre-impl.js';
import { launch } from './runtime.js';

launch(runPre);
