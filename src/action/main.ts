/** The action's main step (action.yml runs dist/main/index.js, this file bundled). */
import { runMain } from './main-impl.js';
import { launch } from './runtime.js';

launch(runMain);
