// The parts of the page every module updates: views, the message box, the status bar, buttons.

import { exitText, formatSeconds } from './format.js';
import { truncatedText } from './limits.js';
import { $, findLanguage, state } from './state.js';

export const STATUS_LABELS = {
  success: 'Success',
  error: 'Error',
  timeout: 'Timed out',
  memory_limit: 'Memory limit exceeded',
  output_limit: 'Output limit reached',
  killed: 'Stopped',
  interrupted: 'Interrupted',
  internal_error: 'Internal error',
  compile_error: 'Compile error',
};

export const SHORT_LABELS = { memory_limit: 'Memory limit', output_limit: 'Output limit', internal_error: 'Internal' };

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

export function showMessage(text, kind = 'error') {
  const box = $('message');
  $('message-text').textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

export function hideMessage() {
  $('message').hidden = true;
  $('message-text').textContent = '';
}

export function showView(name) {
  $('loading-view').hidden = name !== 'loading';
  $('auth-view').hidden = name !== 'auth';
  $('app-view').hidden = name !== 'app';
  const signedIn = name === 'app';
  $('user').hidden = !signedIn;
  $('signout').hidden = !signedIn;
  $('connection').hidden = !signedIn;
}

/** Puts the server's limits into the page's static texts. */
export function showLimits() {
  $('status-truncated').textContent = truncatedText();
}

export function setStatus({ phase, status = '', label, detail = '', exit = '', time = '', truncated = false, announce = true }) {
  const box = $('status');
  box.dataset.state = phase;
  box.dataset.status = status;
  const badge = $('status-state');
  badge.textContent = label;
  badge.className = `status-badge status-${status || phase}`;
  $('status-detail').textContent = detail;
  $('status-exit').textContent = exit;
  $('status-time').textContent = time;
  $('status-truncated').hidden = !truncated;
  if (announce) {
    $('status-announce').textContent = [label, detail, exit, time, truncated ? truncatedText().toLowerCase() : '']
      .filter(Boolean)
      .join(', ');
  }
}

export function setIdleStatus() {
  setStatus({ phase: 'idle', label: 'Ready', announce: false });
}

export function setResultStatus(result) {
  const status = result.status;
  setStatus({
    phase: 'finished',
    status,
    label: statusLabel(status),
    exit: exitText(result),
    // A compile error never ran: its time is the compiler's.
    time: formatSeconds(status === 'compile_error' ? result.compile_time : result.execution_time),
    truncated: !!result.output_truncated,
  });
}

export function updateRunUi() {
  const run = state.run;
  const ready = !!(state.user && state.editor && state.language);
  $('run').disabled = !ready || !!run;
  $('run').setAttribute('aria-busy', run ? 'true' : 'false');
  $('stop').disabled = !run;
  $('stop-label').textContent = run && run.stopRequested && run.phase === 'running' ? 'Force stop' : 'Stop';
  $('eof').disabled = !run || run.stdinClosed;
  $('language').disabled = !state.editor || !state.languages.length;
  $('reset-example').disabled = !state.editor;
  $('input-example').disabled = !state.editor;
  // Only languages that can draw (the languages endpoint's `examples.plot`) offer a plot.
  const lang = findLanguage(state.language);
  $('plot-example').hidden = !(lang && lang.examples && lang.examples.plot);
  $('plot-example').disabled = !state.editor;
  let hint = 'Click here and type to send input while the program runs. Enter sends a line, Ctrl+D ends input, Ctrl+C stops it.';
  if (run && run.stdinClosed) hint = 'Input closed (end-of-file sent). Output keeps streaming until the program ends.';
  else if (run) hint = 'Program running: type here to send input. Enter sends a line, Ctrl+D ends input, Ctrl+C stops it.';
  $('input-hint').textContent = hint;
}

export function showRunPhase(run) {
  const lang = findLanguage(run.language);
  const name = lang ? lang.name : run.language;
  if (run.phase === 'connecting') {
    setStatus({ phase: 'connecting', label: 'Connecting…', detail: name });
  } else if (run.phase === 'queued' && !run.stopRequested) {
    // Every run slot is taken: the server says where this run stands in line.
    const ahead = Math.max(0, run.position - 1);
    setStatus({ phase: 'queued', label: `Waiting — ${ahead} ahead of you`, detail: name });
  } else if (run.phase === 'starting' || run.phase === 'queued') {
    setStatus({ phase: run.stopRequested ? 'stopping' : 'starting', label: run.stopRequested ? 'Stopping…' : 'Starting…', detail: name });
  } else {
    const detail = run.version ? `${name} ${run.version}` : name;
    const busy = run.stage === 'compile' ? 'Compiling…' : 'Running…';
    setStatus({
      phase: run.stopRequested ? 'stopping' : 'running',
      label: run.stopRequested ? 'Stopping…' : busy,
      detail,
      time: formatSeconds((performance.now() - run.startedAt) / 1000),
      truncated: run.truncated,
    });
  }
}
