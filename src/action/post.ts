/** The action's post step (action.yml runs dist/post/index.js, this file bundled). */
import { runPost } from './post-impl.js';
import { launch } from './runtime.js';

launch(runPost);
