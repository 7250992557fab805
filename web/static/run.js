// Runs over the WebSocket: start, input (paced by the server's window), Stop, and the frames back.

import * as api from './api.js';
import { beginCompile, endCompile, resetCompiler, writeCompiler } from './compiler.js';
import { programFiles } from './files.js';
import { clearImages, showImage } from './images.js';
import { clearResults, showTestResult, showTestSummary, summary, usageText } from './tests.js';
import { describe, exitText, formatSeconds, noteKind } from './format.js';
import { loadHistory, markOpenedHistory } from './history.js';
import { truncatedText } from './limits.js';
import { forgetRunId, rememberRunId } from './reattach.js';
import { RunSocket } from './socket.js';
import { $, PROJECT_ID, darkScheme, findLanguage, state } from './state.js';
import { OutputTerminal } from './terminal.js';
import {
  hideMessage,
  setIdleStatus,
  setResultStatus,
  setStatus,
  showMessage,
  showRunPhase,
  statusLabel,
  updateRunUi,
} from './ui.js';

const KILL_AFTER_MS = 2000;
// UTF-16 code units per stdin frame: at most 3 bytes of UTF-8 each, or 6 of JSON for a
// control character, so a frame stays well under the 128 KB frame limit.
const STDIN_CHUNK = 16384;
const UTF8_PER_UNIT = 3;
const utf8 = new TextEncoder();

export function ensureTerminal() {
  if (state.terminal) return;
  state.terminal = new OutputTerminal($('terminal'), {
    onLine: (line) => sendStdin(line),
    onEof: () => sendEof(),
    onInterrupt: () => stopRun(),
    onRunShortcut: () => startRun(),
  });
  state.terminal.setTheme(darkScheme.matches);
}

export function ensureSocket() {
  if (state.socket) return;
  state.socket = new RunSocket(api.socketUrl, {
    onMessage: handleFrame,
    onClose: handleSocketClose,
    onState: (connection) => {
      const el = $('connection');
      el.dataset.state = connection;
      $('connection-text').textContent =
        connection === 'open' ? 'Connected' : connection === 'connecting' ? 'Connecting…' : 'Not connected';
      // Each new socket tells the server the editor's language first (a reconnect too).
      if (connection === 'open' && state.language) sendPrepare();
    },
  });
}

/**
 * Whether the program imports what its language loads ahead (a plot: the languages
 * endpoint's `preload_for`): the server then keeps a sandbox ready that has imported it.
 */
function wantsPreload() {
  const lang = findLanguage(state.language);
  if (!lang || !lang.preload_for || !state.model) return false;
  const pattern = new RegExp(lang.preload_for, 'm');
  const texts = [state.model.getValue(), ...programFiles().map((file) => file.content)];
  return texts.some((text) => pattern.test(text));
}

let announced = '';

function sendPrepare() {
  const preload = wantsPreload();
  announced = `${state.language}:${preload}`;
  state.socket.send({ type: 'prepare', language: state.language, preload });
}

/** Tells the server again when the program started or stopped importing what it preloads. */
export function announceIfChanged() {
  if (!state.socket || !state.socket.isOpen || !state.language) return;
  if (announced !== `${state.language}:${wantsPreload()}`) sendPrepare();
}

/**
 * Tells the server the editor's language, so a warm sandbox waits for its next run
 * (docs/protocol.md, prepare): when the editor loads and when the language changes. Opens the
 * socket if need be; a failure to connect is left for the next run to explain.
 */
export function announceLanguage() {
  if (!state.user || !state.language) return;
  ensureSocket();
  if (state.socket.isOpen) {
    sendPrepare();
    return;
  }
  state.socket.ensureOpen().catch(() => {});
}

/** A run as the page tracks it, from `run` (or `attach`) to its `exit`. */
export function newRun(language) {
  return {
    phase: 'connecting',
    language,
    runId: null,
    version: '',
    // Input waits here until the program has room for it (docs/protocol.md, flow control).
    input: '',
    eofPending: false,
    window: 0,
    sent: 0,
    acked: 0,
    stopRequested: false,
    killTimer: null,
    ticker: null,
    startedAt: 0,
    stdinClosed: false,
    truncated: false,
    returnFocus: document.activeElement,
  };
}

export async function startRun({ tests = null } = {}) {
  if (state.run || !state.user || !state.editor || !state.language) return;
  const run = newRun(state.language);
  const code = state.model.getValue();
  const files = programFiles();
  state.run = run;
  hideMessage();
  resetCompiler();
  state.history.openedId = null;
  markOpenedHistory();
  const terminal = state.terminal;
  terminal.reset();
  clearImages();
  clearResults();
  terminal.setAccepting(true);
  terminal.focus();
  showRunPhase(run);
  updateRunUi();

  ensureSocket();
  try {
    await state.socket.ensureOpen();
  } catch {
    if (state.run !== run) return;
    endRun(run);
    terminal.writeNote('Could not connect to the run server.', 'error');
    setStatus({ phase: 'finished', status: 'disconnected', label: 'Not connected' });
    await explainConnectFailure();
    return;
  }
  if (state.run !== run) return; // cancelled or signed out while connecting
  const message = { type: 'run', language: run.language, code };
  if (files.length) message.files = files;
  if (PROJECT_ID !== null) message.project_id = PROJECT_ID;
  if (tests) message.tests = tests;
  state.socket.send(message);
  run.phase = 'starting';
  showRunPhase(run);
  updateRunUi();
}

async function explainConnectFailure() {
  try {
    await api.me();
  } catch (err) {
    if (err.status !== 401) showMessage(`Could not connect to the run server: ${describe(err)}`);
    return; // a 401 has already sent the student back to the sign-in form
  }
  showMessage('Could not connect to the run server. Check your connection, then press Run to try again.');
}

/** Ends the local side of a run: timers, input, buttons. Returns focus if it was in the terminal. */
export function endRun(run) {
  clearTimeout(run.killTimer);
  clearInterval(run.ticker);
  run.input = '';
  if (state.run === run) state.run = null;
  state.terminal.setAccepting(false);
  updateRunUi();
  if (state.terminal.hasFocus()) {
    const back = run.returnFocus;
    if (state.editor && back && $('editor').contains(back)) state.editor.focus();
    else if (back && back.isConnected && back !== document.body && !back.disabled) back.focus();
  }
}

export function abandonRun(note) {
  const run = state.run;
  if (!run) return;
  endRun(run);
  state.terminal.writeNote(note, 'error');
}

// Input --------------------------------------------------------------------------------

function sendStdin(data) {
  const run = state.run;
  if (!run || run.stdinClosed) return;
  run.input += data;
  pumpInput(run);
}

function sendEof() {
  const run = state.run;
  if (!run || run.stdinClosed) return;
  const partial = state.terminal.takePartialLine();
  if (partial) run.input += partial;
  run.eofPending = true;
  run.stdinClosed = true;
  pumpInput(run);
  state.terminal.setAccepting(false);
  updateRunUi();
}

/**
 * Sends what input fits in the window: at most `window` bytes sent and not yet acknowledged.
 * Called when input arrives, when the run starts, and at every `stdin_ack`. End-of-file
 * follows the last of the input; signals never wait here.
 */
function pumpInput(run) {
  if (run.phase !== 'running' || state.run !== run) return;
  while (run.input) {
    const room = run.window - (run.sent - run.acked);
    let size = Math.min(STDIN_CHUNK, Math.floor(room / UTF8_PER_UNIT), run.input.length);
    if (size <= 0) return; // the next stdin_ack makes room
    // Never split a surrogate pair: half a character is not UTF-8.
    const last = run.input.charCodeAt(size - 1);
    if (size < run.input.length && last >= 0xd800 && last <= 0xdbff) size -= 1;
    if (size <= 0) return;
    const piece = run.input.slice(0, size);
    if (!state.socket.send({ type: 'stdin', data: piece })) return; // its close event explains
    run.input = run.input.slice(size);
    run.sent += utf8.encode(piece).length;
  }
  if (run.eofPending) {
    run.eofPending = false;
    state.socket.send({ type: 'eof' });
  }
}

/** The Send EOF button: end the input, and keep typing focus in the terminal. */
export function sendEofFromButton() {
  sendEof();
  if (state.run) state.terminal.focus();
}

// Stop ---------------------------------------------------------------------------------

export function stopRun() {
  const run = state.run;
  if (!run) return;
  if (run.phase === 'connecting') {
    endRun(run);
    state.terminal.writeNote('Cancelled before the program started.', 'warning');
    setIdleStatus();
    return;
  }
  if (run.stopRequested) {
    // A second press does not wait for the grace period.
    if (run.phase === 'running') {
      clearTimeout(run.killTimer);
      state.socket.send({ type: 'signal', signal: 'SIGKILL' });
    }
    return;
  }
  run.stopRequested = true;
  if (run.phase === 'running') interrupt(run);
  else if (run.phase === 'queued') leaveQueue();
  showRunPhase(run);
  updateRunUi();
}

/** A run waiting for its turn leaves the line: the server answers `run_cancelled`. */
function leaveQueue() {
  state.socket.send({ type: 'signal', signal: 'SIGINT' });
}

function interrupt(run) {
  state.socket.send({ type: 'signal', signal: 'SIGINT' });
  run.killTimer = setTimeout(() => {
    if (state.run === run) state.socket.send({ type: 'signal', signal: 'SIGKILL' });
  }, KILL_AFTER_MS);
}

// Frames from the server ---------------------------------------------------------------

function handleFrame(msg) {
  const run = state.run;
  switch (msg && msg.type) {
    case 'queued': {
      if (!run || (run.phase !== 'starting' && run.phase !== 'queued')) return;
      const first = run.phase === 'starting';
      run.phase = 'queued';
      run.position = Number(msg.position) || 1;
      if (first && run.stopRequested) leaveQueue(); // Stop was pressed before the line was known
      showRunPhase(run);
      updateRunUi();
      return;
    }
    case 'attached':
    case 'started': {
      if (!run) return;
      if (msg.type === 'attached') {
        run.attaching = false;
        run.sent = Number(msg.stdin_sent) || 0;
        run.acked = Number(msg.stdin_acked) || 0;
      }
      rememberRunId(msg.run_id);
      run.phase = 'running';
      run.runId = msg.run_id;
      run.version = msg.version || '';
      run.window = Number(msg.stdin_window) || 0;
      run.startedAt = performance.now();
      run.ticker = setInterval(() => {
        if (state.run === run) {
          $('status-time').textContent = formatSeconds((performance.now() - run.startedAt) / 1000);
        }
      }, 100);
      if (run.stopRequested) interrupt(run);
      pumpInput(run);
      showRunPhase(run);
      updateRunUi();
      return;
    }
    case 'stdin_ack':
      if (!run) return;
      run.acked = Math.max(run.acked, Number(msg.bytes) || 0);
      pumpInput(run);
      return;
    case 'stage':
      if (!run) return;
      if (run.stage === 'compile') endCompile(msg.stage === 'run');
      run.stage = msg.stage;
      if (msg.stage === 'compile') beginCompile();
      showRunPhase(run);
      return;
    case 'output':
      // Between `stage: compile` and `stage: run` it is the compiler speaking.
      if (run && run.stage === 'compile') writeCompiler(String(msg.data ?? ''));
      else state.terminal.writeOutput(String(msg.data ?? ''), msg.stream);
      return;
    case 'image':
      showImage(msg);
      return;
    case 'test':
      showTestResult(msg);
      return;
    case 'limit':
      if (run) run.truncated = true;
      state.terminal.writeNote(`[${msg.message || 'Output limit reached'}]`, 'warning');
      $('status-truncated').hidden = false;
      return;
    case 'exit':
      finishRun(msg);
      return;
    case 'error':
      handleServerError(msg);
      return;
    default:
      showMessage(`The server sent a frame this page does not understand: ${JSON.stringify(msg).slice(0, 200)}`);
  }
}

function finishRun(msg) {
  forgetRunId();
  const run = state.run;
  if (run && run.stage === 'compile') endCompile(false);
  if (run) endRun(run);
  const compiled = msg.compile_time === null || msg.compile_time === undefined ? '' : `compiled in ${formatSeconds(msg.compile_time)}`;
  const ran = msg.status === 'compile_error' ? '' : formatSeconds(msg.execution_time);
  const parts = [statusLabel(msg.status), summary(msg), exitText(msg), compiled, ran, usageText(msg)].filter(Boolean);
  state.terminal.writeNote(`[${parts.join(' · ')}]`, noteKind(msg.status));
  if (msg.output_truncated) state.terminal.writeNote(`[${truncatedText()}]`, 'warning');
  setResultStatus(msg);
  showTestSummary(msg);
  loadHistory();
}

function handleServerError(msg) {
  const run = state.run;
  const text = `${msg.message || 'Unknown error'} (${msg.code || 'error'})`;
  if (run && run.attaching) {
    // The run of before the reload has ended meanwhile: its result is in the history.
    forgetRunId();
    endRun(run);
    setIdleStatus();
    return;
  }
  if (run && (run.phase === 'starting' || run.phase === 'queued')) {
    // The run has not started, so this answers it: nothing started.
    endRun(run);
    if (msg.code === 'run_cancelled') {
      state.terminal.writeNote('Cancelled before the program started.', 'warning');
      setIdleStatus();
      return;
    }
    state.terminal.writeNote(`The program was not started: ${text}`, 'error');
    setStatus({ phase: 'finished', status: 'not_started', label: 'Not started', detail: msg.message || '', exit: msg.code || '' });
    // The token expired or the account is gone: asking who we are leads back to sign-in.
    if (msg.code === 'unauthorized') api.me().catch(() => {});
    return;
  }
  // The run, if any, goes on.
  showMessage(`Server error: ${text}`);
}

function handleSocketClose({ code, reason, expected }) {
  if (expected) return;
  let why = 'The connection to the run server was lost';
  if (code === 1001) why = 'The server is restarting';
  else if (code && code !== 1006 && code !== 1005) why += ` (code ${code}${reason ? `: ${reason}` : ''})`;
  const run = state.run;
  if (run) {
    endRun(run);
    state.terminal.writeNote(`[${why}. The program was stopped.]`, 'error');
    setStatus({ phase: 'finished', status: 'disconnected', label: 'Connection lost' });
    loadHistory();
  }
  showMessage(`${why}. It will reconnect when you run code again.`, run ? 'error' : 'warning');
}
