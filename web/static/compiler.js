// The compiler's messages, in a pane of their own above the program's output: a compiled
// language's run streams them between its `stage: compile` and `stage: run` frames.

import { $ } from './state.js';

/** Empties and hides the pane (a new run starts). */
export function resetCompiler() {
  const pane = $('compiler-pane');
  pane.hidden = true;
  pane.dataset.state = '';
  $('compiler').textContent = '';
}

/** The compile stage began: the pane shows, saying so. */
export function beginCompile() {
  const pane = $('compiler-pane');
  pane.hidden = false;
  pane.dataset.state = 'compiling';
  $('compiler-title').textContent = 'Compiling…';
}

export function writeCompiler(text) {
  $('compiler').textContent += text;
}

/** The compile stage ended; ``ok`` when the program went on to run. A build with nothing
 * to say hides the pane again. */
export function endCompile(ok) {
  const pane = $('compiler-pane');
  pane.dataset.state = ok ? 'compiled' : 'failed';
  $('compiler-title').textContent = ok ? 'Compiler messages' : 'Compile error';
  if (ok && !$('compiler').textContent) pane.hidden = true;
}
