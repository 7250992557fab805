// After a reload, the run the page had going comes back: the socket attaches to it by id
// (docs/protocol.md, Reattach), the server replays its output, and input works again.

import { endRun, ensureSocket, newRun } from './run.js';
import { state } from './state.js';
import { showRunPhase, updateRunUi } from './ui.js';

const KEY = 'execstream.run';

export function rememberRunId(runId) {
  try {
    sessionStorage.setItem(KEY, runId);
  } catch {
    /* storage off: a reload then loses the run, as before */
  }
}

export function forgetRunId() {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    /* nothing kept */
  }
}

/** Attaches to the run this tab had before a reload, if any; its frames come as a run's. */
export async function resumeRun() {
  let runId = null;
  try {
    runId = sessionStorage.getItem(KEY);
  } catch {
    return;
  }
  if (!runId || state.run || !state.user) return;
  const run = newRun(state.language);
  run.phase = 'starting';
  run.attaching = true;
  state.run = run;
  state.terminal.reset();
  state.terminal.setAccepting(true);
  showRunPhase(run);
  updateRunUi();
  ensureSocket();
  try {
    await state.socket.ensureOpen();
  } catch {
    if (state.run === run) endRun(run);
    return;
  }
  if (state.run !== run) return;
  state.socket.send({ type: 'attach', run_id: runId });
}
