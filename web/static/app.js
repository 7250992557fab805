// The execstream editor: sign-in, Monaco editor, live runs over the WebSocket, run history.
// Plain ES modules; Monaco comes from its AMD build, xterm.js from its UMD build (see index.html).

import * as api from './api.js';
import { OutputTerminal } from './terminal.js';
import { RunSocket } from './socket.js';

const $ = (id) => document.getElementById(id);

const PROJECT_ID = (() => {
  const match = location.pathname.match(/^\/projects\/(\d+)\/editor\/?$/);
  return match ? Number(match[1]) : null;
})();

const MONACO_BASE = '/vendor/monaco-editor/min/vs';
const KILL_AFTER_MS = 2000;
const STDIN_CHUNK = 16384; // characters per stdin frame, well under the 128 KB frame limit
const HISTORY_PAGE = 50;

const STATUS_LABELS = {
  success: 'Success',
  error: 'Error',
  timeout: 'Timed out',
  memory_limit: 'Memory limit exceeded',
  output_limit: 'Output limit reached',
  killed: 'Stopped',
  internal_error: 'Internal error',
};

const SHORT_LABELS = { memory_limit: 'Memory limit', output_limit: 'Output limit', internal_error: 'Internal' };

const darkScheme = window.matchMedia('(prefers-color-scheme: dark)');

const state = {
  user: null,
  languages: [],
  language: null,
  monaco: null,
  editor: null,
  model: null,
  drafts: new Map(), // language id -> text, for when localStorage is unavailable
  terminal: null,
  socket: null,
  run: null,
  history: { items: [], nextCursor: null, seq: 0, openedId: null },
};

// ---------------------------------------------------------------------------------------
// Small helpers

function describe(err) {
  if (err instanceof api.ApiError) return err.describe();
  return err && err.message ? err.message : String(err);
}

function showMessage(text, kind = 'error') {
  const box = $('message');
  $('message-text').textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

function hideMessage() {
  $('message').hidden = true;
  $('message-text').textContent = '';
}

function formatSeconds(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  return `${seconds.toFixed(1)} s`;
}

function parseDate(text) {
  if (!text) return null;
  // Timestamps without a zone are the server's UTC.
  const zoned = /(?:[zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`;
  const date = new Date(zoned);
  return Number.isNaN(date.getTime()) ? null : date;
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
function timeAgo(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), 'hour');
  if (abs < 86400 * 30) return relativeFormat.format(Math.round(seconds / 86400), 'day');
  return date.toLocaleDateString();
}

function exitText(result) {
  if (result.signal) return `signal ${result.signal}`;
  if (result.exit_code !== null && result.exit_code !== undefined) return `exit code ${result.exit_code}`;
  return '';
}

function noteKind(status) {
  if (status === 'success') return 'info';
  if (status === 'error' || status === 'internal_error') return 'error';
  return 'warning';
}

function findLanguage(id) {
  return state.languages.find((lang) => lang.id === id) || null;
}

function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* storage full or disabled: the in-memory copy still works */
  }
}

function storagePrefix() {
  return `execstream.${state.user ? state.user.id : 'anon'}.${PROJECT_ID ?? 'scratch'}`;
}

// ---------------------------------------------------------------------------------------
// Views

function showView(name) {
  $('loading-view').hidden = name !== 'loading';
  $('auth-view').hidden = name !== 'auth';
  $('app-view').hidden = name !== 'app';
  const signedIn = name === 'app';
  $('user').hidden = !signedIn;
  $('signout').hidden = !signedIn;
  $('connection').hidden = !signedIn;
}

function showLoadingError(text) {
  showView('loading');
  $('loading-text').textContent = text;
  $('retry').hidden = false;
  $('retry').focus();
}

function showAuth(message) {
  showView('auth');
  if (message) showMessage(message, 'info');
  $('signin-username').focus();
}

// ---------------------------------------------------------------------------------------
// Authentication

async function boot() {
  $('loading-text').textContent = 'Loading…';
  $('retry').hidden = true;
  if (!api.getToken()) {
    showAuth();
    return;
  }
  let user;
  try {
    user = await api.me();
  } catch (err) {
    if (err.status === 401) return; // the unauthorized handler has shown the sign-in form
    showLoadingError(`Could not check your session: ${describe(err)}`);
    return;
  }
  try {
    await enterApp(user);
  } catch (err) {
    showMessage(`Something went wrong while opening the editor: ${describe(err)}`);
  }
}

function handleUnauthorized() {
  if (!state.user && !$('auth-view').hidden) return;
  leaveApp({ clearDrafts: false });
  showAuth('Your session has ended. Please sign in again.');
}

function signOut() {
  leaveApp({ clearDrafts: true });
  api.clearToken();
  showAuth('You have signed out.');
}

function leaveApp({ clearDrafts }) {
  api.clearToken();
  if (state.run) abandonRun('Signed out: the program was stopped.');
  if (state.socket) state.socket.close();
  state.socket = null;
  if (state.model) {
    if (clearDrafts) {
      clearStoredDrafts();
    } else {
      saveDraft();
    }
    state.model.dispose();
    state.model = null;
  }
  state.drafts.clear();
  state.language = null;
  state.user = null;
  state.history = { items: [], nextCursor: null, seq: state.history.seq + 1, openedId: null };
  renderHistory();
  if (state.terminal) state.terminal.reset();
  setIdleStatus();
  updateRunUi();
}

function clearStoredDrafts() {
  const prefix = `execstream.${state.user ? state.user.id : 'anon'}.`;
  try {
    for (let i = localStorage.length - 1; i >= 0; i -= 1) {
      const key = localStorage.key(i);
      if (key && key.startsWith(prefix) && key.includes('.draft.')) localStorage.removeItem(key);
    }
  } catch {
    /* ignore */
  }
}

function validateSignup(form) {
  const username = form.elements.username;
  const password = form.elements.password;
  if (!/^[A-Za-z0-9_.-]{3,32}$/.test(username.value)) {
    username.focus();
    return 'Usernames are 3–32 characters: letters, digits, _ . and -';
  }
  if (password.value.length < 8 || password.value.length > 128) {
    password.focus();
    return 'Passwords are 8–128 characters long.';
  }
  return null;
}

async function submitAuth(event, mode) {
  event.preventDefault();
  const form = event.currentTarget;
  const errorBox = $(`${mode}-error`);
  const button = $(`${mode}-submit`);
  errorBox.textContent = '';
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value;
  if (!username || !password) {
    errorBox.textContent = 'Enter a username and a password.';
    (username ? form.elements.password : form.elements.username).focus();
    return;
  }
  if (mode === 'signup') {
    const problem = validateSignup(form);
    if (problem) {
      errorBox.textContent = problem;
      return;
    }
  }
  button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    if (mode === 'signup') await api.register(username, password);
    await api.signIn(username, password);
    const user = await api.me();
    form.reset();
    hideMessage();
    await enterApp(user);
  } catch (err) {
    if (state.user) showMessage(`Something went wrong while opening the editor: ${describe(err)}`);
    else errorBox.textContent = describe(err);
  } finally {
    button.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------------------
// Entering the editor

let monacoPromise = null;
function loadMonaco() {
  if (!monacoPromise) {
    monacoPromise = new Promise((resolve, reject) => {
      const amdRequire = window.require;
      if (!amdRequire || typeof amdRequire.config !== 'function') {
        reject(new Error(`Monaco's loader did not load (${MONACO_BASE}/loader.js)`));
        return;
      }
      amdRequire.config({ paths: { vs: MONACO_BASE } });
      // Monaco's AMD build sets self.MonacoEnvironment itself: its workers start from
      // same-origin blob: URLs that importScripts() files under MONACO_BASE/assets.
      amdRequire(
        ['vs/editor/editor.main'],
        () => resolve(window.monaco),
        (err) => reject(new Error(`The code editor failed to load: ${err && err.message ? err.message : err}`)),
      );
    });
  }
  return monacoPromise;
}

async function enterApp(user) {
  state.user = user;
  $('username').textContent = user.username;
  showView('app');
  ensureTerminal();
  setIdleStatus();
  updateRunUi();
  ensureSocket();
  state.socket.ensureOpen().catch(() => {
    /* shown by the connection indicator; the next run reconnects and explains */
  });
  loadHistory();

  let languages;
  try {
    languages = await api.languages();
  } catch (err) {
    if (err.status !== 401) showMessage(`Could not load the list of languages: ${describe(err)}`);
    return;
  }
  if (state.user !== user) return;
  state.languages = languages;
  fillLanguageSelect();
  if (!languages.length) {
    showMessage('The server offers no languages to run.');
    return;
  }

  let monaco;
  try {
    monaco = await loadMonaco();
  } catch (err) {
    showMessage(describe(err));
    return;
  }
  if (state.user !== user) return;
  ensureEditor(monaco);
  const remembered = storageGet(`${storagePrefix()}.language`);
  switchLanguage(findLanguage(remembered) ? remembered : languages[0].id);
  updateRunUi();
}

function fillLanguageSelect() {
  const select = $('language');
  select.replaceChildren(
    ...state.languages.map((lang) => {
      const option = document.createElement('option');
      option.value = lang.id;
      option.textContent = lang.version ? `${lang.name} (${lang.version})` : lang.name;
      return option;
    }),
  );
}

// ---------------------------------------------------------------------------------------
// Editor

const NODE_GLOBALS = `
declare var require: any;
declare var module: any;
declare var exports: any;
declare var process: any;
declare var Buffer: any;
declare var __dirname: string;
declare var __filename: string;
declare module '*';
`;

function ensureEditor(monaco) {
  if (state.editor) return;
  state.monaco = monaco;
  // The programs run under Node.js, not in a page: let Node's globals and modules through,
  // and treat each file as a module so names like `name` don't clash with DOM globals.
  const ts = monaco.typescript || (monaco.languages && monaco.languages.typescript);
  if (ts && ts.typescriptDefaults) {
    for (const defaults of [ts.typescriptDefaults, ts.javascriptDefaults]) {
      defaults.setCompilerOptions({
        ...defaults.getCompilerOptions(),
        target: ts.ScriptTarget ? ts.ScriptTarget.ES2020 : 7,
        allowNonTsExtensions: true,
        moduleDetection: 3, // force
      });
      defaults.addExtraLib(NODE_GLOBALS, 'file:///execstream-node-globals.d.ts');
    }
  }
  state.editor = monaco.editor.create($('editor'), {
    model: null,
    theme: darkScheme.matches ? 'vs-dark' : 'vs',
    automaticLayout: true,
    fontSize: 14,
    minimap: { enabled: false },
    scrollBeyondLastLine: false,
    fixedOverflowWidgets: true,
    padding: { top: 8, bottom: 8 },
    tabSize: 4,
    ariaLabel: 'Code editor. Press Control+Enter to run, Control+M to make Tab move focus.',
  });
  state.editor.addAction({
    id: 'execstream.run',
    label: 'Run code',
    keybindings: [monaco.KeyMod.CtrlCmd | monaco.KeyCode.Enter],
    run: () => startRun(),
  });
}

function monacoLanguageFor(lang) {
  const known = state.monaco.languages.getLanguages();
  if (known.some((l) => l.id === lang.id)) return lang.id;
  const byExtension = known.find((l) => (l.extensions || []).includes(lang.extension));
  return byExtension ? byExtension.id : 'plaintext';
}

function draftKey(languageId) {
  return `${storagePrefix()}.draft.${languageId}`;
}

function saveDraft() {
  if (!state.model || !state.language) return;
  const text = state.model.getValue();
  state.drafts.set(state.language, text);
  storageSet(draftKey(state.language), text);
}

let draftTimer = null;
function scheduleDraftSave() {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(saveDraft, 400);
}

function switchLanguage(languageId) {
  const lang = findLanguage(languageId);
  if (!lang || !state.editor) return;
  if (state.model) {
    clearTimeout(draftTimer);
    saveDraft();
    state.model.dispose();
  }
  state.language = lang.id;
  $('language').value = lang.id;
  const text = state.drafts.get(lang.id) ?? storageGet(draftKey(lang.id)) ?? lang.example ?? '';
  // One model at a time: TypeScript's service would otherwise see every open file as one program.
  state.model = state.monaco.editor.createModel(text, monacoLanguageFor(lang));
  state.model.onDidChangeContent(scheduleDraftSave);
  state.editor.setModel(state.model);
  storageSet(`${storagePrefix()}.language`, lang.id);
}

/** Replaces the editor's text as one undoable edit. */
function replaceCode(text) {
  const editor = state.editor;
  editor.pushUndoStop();
  editor.executeEdits('execstream', [{ range: state.model.getFullModelRange(), text, forceMoveMarkers: true }]);
  editor.pushUndoStop();
  editor.setPosition({ lineNumber: 1, column: 1 });
  editor.revealLine(1);
  saveDraft();
}

function applyTheme() {
  const dark = darkScheme.matches;
  if (state.monaco) state.monaco.editor.setTheme(dark ? 'vs-dark' : 'vs');
  if (state.terminal) state.terminal.setTheme(dark);
}

// ---------------------------------------------------------------------------------------
// Terminal and status bar

function ensureTerminal() {
  if (state.terminal) return;
  state.terminal = new OutputTerminal($('terminal'), {
    onLine: (line) => sendStdin(line),
    onEof: () => sendEof(),
    onInterrupt: () => stopRun(),
    onRunShortcut: () => startRun(),
  });
  state.terminal.setTheme(darkScheme.matches);
}

function setStatus({ phase, status = '', label, detail = '', exit = '', time = '', truncated = false, announce = true }) {
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
    $('status-announce').textContent = [label, detail, exit, time, truncated ? 'output was cut at 10 KB' : '']
      .filter(Boolean)
      .join(', ');
  }
}

function setIdleStatus() {
  setStatus({ phase: 'idle', label: 'Ready', announce: false });
}

function setResultStatus(result) {
  const status = result.status;
  setStatus({
    phase: 'finished',
    status,
    label: STATUS_LABELS[status] || status,
    exit: exitText(result),
    time: formatSeconds(result.execution_time),
    truncated: !!result.output_truncated,
  });
}

function updateRunUi() {
  const run = state.run;
  const ready = !!(state.user && state.editor && state.language);
  $('run').disabled = !ready || !!run;
  $('run').setAttribute('aria-busy', run ? 'true' : 'false');
  $('stop').disabled = !run;
  $('stop-label').textContent = run && run.stopRequested && run.phase === 'running' ? 'Force stop' : 'Stop';
  $('eof').disabled = !run || run.stdinClosed;
  $('language').disabled = !state.editor || !state.languages.length;
  $('reset-example').disabled = !state.editor;
  let hint = 'Click here and type to send input while the program runs. Enter sends a line, Ctrl+D ends input, Ctrl+C stops it.';
  if (run && run.stdinClosed) hint = 'Input closed (end-of-file sent). Output keeps streaming until the program ends.';
  else if (run) hint = 'Program running: type here to send input. Enter sends a line, Ctrl+D ends input, Ctrl+C stops it.';
  $('input-hint').textContent = hint;
}

function showRunPhase(run) {
  const lang = findLanguage(run.language);
  const name = lang ? lang.name : run.language;
  if (run.phase === 'connecting') {
    setStatus({ phase: 'connecting', label: 'Connecting…', detail: name });
  } else if (run.phase === 'starting') {
    setStatus({ phase: run.stopRequested ? 'stopping' : 'starting', label: run.stopRequested ? 'Stopping…' : 'Starting…', detail: name });
  } else {
    const detail = run.version ? `${name} ${run.version}` : name;
    setStatus({
      phase: run.stopRequested ? 'stopping' : 'running',
      label: run.stopRequested ? 'Stopping…' : 'Running…',
      detail,
      time: formatSeconds((performance.now() - run.startedAt) / 1000),
      truncated: run.truncated,
    });
  }
}

// ---------------------------------------------------------------------------------------
// Runs over the WebSocket

function ensureSocket() {
  if (state.socket) return;
  state.socket = new RunSocket(api.socketUrl, {
    onMessage: handleFrame,
    onClose: handleSocketClose,
    onState: (connection) => {
      const el = $('connection');
      el.dataset.state = connection;
      $('connection-text').textContent =
        connection === 'open' ? 'Connected' : connection === 'connecting' ? 'Connecting…' : 'Not connected';
    },
  });
}

async function startRun() {
  if (state.run || !state.user || !state.editor || !state.language) return;
  const run = {
    phase: 'connecting',
    language: state.language,
    runId: null,
    version: '',
    outbox: [],
    stopRequested: false,
    killTimer: null,
    ticker: null,
    startedAt: 0,
    stdinClosed: false,
    truncated: false,
    returnFocus: document.activeElement,
  };
  const code = state.model.getValue();
  state.run = run;
  hideMessage();
  state.history.openedId = null;
  markOpenedHistory();
  const terminal = state.terminal;
  terminal.reset();
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
  if (PROJECT_ID !== null) message.project_id = PROJECT_ID;
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
function endRun(run) {
  clearTimeout(run.killTimer);
  clearInterval(run.ticker);
  if (state.run === run) state.run = null;
  state.terminal.setAccepting(false);
  updateRunUi();
  if (state.terminal.hasFocus()) {
    const back = run.returnFocus;
    if (state.editor && back && $('editor').contains(back)) state.editor.focus();
    else if (back && back.isConnected && back !== document.body && !back.disabled) back.focus();
  }
}

function abandonRun(note) {
  const run = state.run;
  if (!run) return;
  endRun(run);
  state.terminal.writeNote(note, 'error');
}

/** Sends a frame for the current run; frames typed before `started` wait for it. */
function sendRunFrame(frame) {
  const run = state.run;
  if (!run) return;
  if (run.phase !== 'running') {
    run.outbox.push(frame);
    return;
  }
  state.socket.send(frame); // a lost socket is reported by its close event
}

function sendStdin(data) {
  for (let i = 0; i < data.length; i += STDIN_CHUNK) {
    sendRunFrame({ type: 'stdin', data: data.slice(i, i + STDIN_CHUNK) });
  }
}

function sendEof() {
  const run = state.run;
  if (!run || run.stdinClosed) return;
  const partial = state.terminal.takePartialLine();
  if (partial) sendStdin(partial);
  sendRunFrame({ type: 'eof' });
  run.stdinClosed = true;
  state.terminal.setAccepting(false);
  updateRunUi();
}

function stopRun() {
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
  showRunPhase(run);
  updateRunUi();
}

function interrupt(run) {
  state.socket.send({ type: 'signal', signal: 'SIGINT' });
  run.killTimer = setTimeout(() => {
    if (state.run === run) state.socket.send({ type: 'signal', signal: 'SIGKILL' });
  }, KILL_AFTER_MS);
}

function handleFrame(msg) {
  const run = state.run;
  switch (msg && msg.type) {
    case 'started': {
      if (!run) return;
      run.phase = 'running';
      run.runId = msg.run_id;
      run.version = msg.version || '';
      run.startedAt = performance.now();
      run.ticker = setInterval(() => {
        if (state.run === run) {
          $('status-time').textContent = formatSeconds((performance.now() - run.startedAt) / 1000);
        }
      }, 100);
      for (const frame of run.outbox.splice(0)) state.socket.send(frame);
      if (run.stopRequested) interrupt(run);
      showRunPhase(run);
      updateRunUi();
      return;
    }
    case 'output':
      state.terminal.writeOutput(String(msg.data ?? ''), msg.stream);
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
  const run = state.run;
  if (run) endRun(run);
  const label = STATUS_LABELS[msg.status] || msg.status;
  const parts = [label, exitText(msg), formatSeconds(msg.execution_time)].filter(Boolean);
  state.terminal.writeNote(`[${parts.join(' · ')}]`, noteKind(msg.status));
  if (msg.output_truncated) state.terminal.writeNote('[Output was cut at 10 KB]', 'warning');
  setResultStatus(msg);
  loadHistory();
}

function handleServerError(msg) {
  const run = state.run;
  const text = `${msg.message || 'Unknown error'} (${msg.code || 'error'})`;
  if (run && run.phase === 'starting') {
    // Nothing else was sent since the run message, so this answers it: nothing started.
    endRun(run);
    state.terminal.writeNote(`The program was not started: ${text}`, 'error');
    setStatus({ phase: 'finished', status: 'not_started', label: 'Not started', detail: msg.message || '', exit: msg.code || '' });
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

// ---------------------------------------------------------------------------------------
// History

/** Loads the first page again (or the next one). Failures show in the panel; `loud` also raises them. */
async function loadHistory({ more = false, loud = false } = {}) {
  const history = state.history;
  const seq = ++history.seq;
  const statusEl = $('history-status');
  if (!more && !history.items.length) {
    statusEl.textContent = 'Loading…';
    delete statusEl.dataset.kind;
    statusEl.hidden = false;
  }
  $('history-more').disabled = true;
  try {
    const page = await api.history({
      projectId: PROJECT_ID,
      limit: HISTORY_PAGE,
      cursor: more ? history.nextCursor : null,
    });
    if (seq !== history.seq) return;
    history.items = more ? history.items.concat(page.items) : page.items;
    history.nextCursor = page.nextCursor;
    renderHistory();
  } catch (err) {
    if (seq !== history.seq) return;
    statusEl.textContent = `Could not load the history: ${describe(err)}`;
    statusEl.dataset.kind = 'error';
    statusEl.hidden = false;
    if (loud && err.status !== 401) showMessage(`Could not load the history: ${describe(err)}`);
  } finally {
    if (seq === history.seq) $('history-more').disabled = false;
  }
}

function firstLine(code) {
  const line = (code || '').split('\n').find((l) => l.trim()) || '(empty)';
  return line.trim().slice(0, 120);
}

function renderHistory() {
  const { items, nextCursor } = state.history;
  const list = $('history-list');
  const statusEl = $('history-status');
  list.replaceChildren(...items.map(historyItem));
  delete statusEl.dataset.kind;
  if (state.user && !items.length) {
    statusEl.textContent = PROJECT_ID !== null ? 'No runs in this project yet.' : 'No runs yet. Your runs will appear here.';
    statusEl.hidden = false;
  } else {
    statusEl.hidden = true;
  }
  $('history-more').hidden = !nextCursor || !items.length;
  markOpenedHistory();
}

function historyItem(record) {
  const li = document.createElement('li');
  li.className = 'history-item';
  li.dataset.testid = 'history-item';
  li.dataset.id = String(record.id);
  li.dataset.status = record.status;

  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'history-open';
  open.dataset.testid = 'history-open';
  const lang = findLanguage(record.language);
  const label = STATUS_LABELS[record.status] || record.status;
  const created = parseDate(record.created_at);

  const title = document.createElement('span');
  title.className = 'history-code';
  title.textContent = firstLine(record.code);

  const meta = document.createElement('span');
  meta.className = 'history-meta';
  const badge = document.createElement('span');
  badge.className = `history-badge status-${record.status}`;
  badge.textContent = SHORT_LABELS[record.status] || label;
  const facts = [lang ? lang.name : record.language, formatSeconds(record.execution_time), created ? timeAgo(created) : '']
    .filter(Boolean)
    .join(' · ');
  meta.append(badge, document.createTextNode(` ${facts}`));

  open.append(title, meta);
  open.title = `Open run #${record.id}${created ? ` from ${created.toLocaleString()}` : ''}`;
  open.addEventListener('click', () => openRecord(record));

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'history-delete icon-button';
  remove.dataset.testid = 'history-delete';
  remove.setAttribute('aria-label', `Delete run #${record.id}`);
  remove.title = 'Delete this run';
  remove.innerHTML =
    '<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false"><path fill="currentColor" d="M6 1h4a1 1 0 0 1 1 1v1h3v1.5H2V3h3V2a1 1 0 0 1 1-1Zm0 2h4V2.5H6V3ZM3.5 6h9l-.7 8.1A1 1 0 0 1 10.8 15H5.2a1 1 0 0 1-1-.9L3.5 6Z"/></svg>';
  remove.addEventListener('click', () => deleteRecord(record, remove));

  li.append(open, remove);
  return li;
}

function markOpenedHistory() {
  for (const li of $('history-list').children) {
    const opened = li.dataset.id === String(state.history.openedId);
    li.classList.toggle('opened', opened);
    const button = li.querySelector('.history-open');
    if (opened) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }
}

function openRecord(record) {
  if (state.run) {
    showMessage('A program is running: stop it before opening a past run.', 'warning');
    return;
  }
  if (!state.editor) return;
  const lang = findLanguage(record.language);
  if (!lang) {
    showMessage(`Run #${record.id} used "${record.language}", which this server no longer offers.`, 'warning');
    return;
  }
  hideMessage();
  if (state.language !== lang.id) switchLanguage(lang.id);
  replaceCode(record.code || '');
  const terminal = state.terminal;
  terminal.reset();
  const created = parseDate(record.created_at);
  terminal.writeNote(`Run #${record.id} · ${lang.name}${created ? ` · ${created.toLocaleString()}` : ''}`);
  if (record.stdin) {
    terminal.writeNote('Input:');
    terminal.writeNote(record.stdin.replace(/\n$/, ''));
    terminal.writeNote('Output:');
  }
  terminal.writeOutput(record.output || '', 'stdout');
  terminal.writeOutput(record.error || '', 'stderr');
  const parts = [STATUS_LABELS[record.status] || record.status, exitText(record), formatSeconds(record.execution_time)];
  terminal.writeNote(`[${parts.filter(Boolean).join(' · ')}]`, noteKind(record.status));
  if (record.output_truncated) terminal.writeNote('[Output was cut at 10 KB]', 'warning');
  setResultStatus(record);
  state.history.openedId = record.id;
  markOpenedHistory();
}

async function deleteRecord(record, button) {
  button.disabled = true;
  try {
    await api.deleteRun(record.id);
  } catch (err) {
    if (err.status !== 404) {
      button.disabled = false;
      if (err.status !== 401) showMessage(`Could not delete run #${record.id}: ${describe(err)}`);
      return;
    }
    // 404: already gone; drop it from the list too.
  }
  const history = state.history;
  const index = history.items.findIndex((r) => r.id === record.id);
  if (index >= 0) history.items.splice(index, 1);
  if (history.openedId === record.id) history.openedId = null;
  renderHistory();
  $('status-announce').textContent = `Run #${record.id} deleted`;
  // Keep keyboard focus in the list.
  const buttons = $('history-list').querySelectorAll('.history-open');
  const next = buttons[Math.min(index, buttons.length - 1)];
  (next || $('history-refresh')).focus();
}

// ---------------------------------------------------------------------------------------
// Wiring

function wire() {
  api.onUnauthorized(handleUnauthorized);
  $('signin-form').addEventListener('submit', (e) => submitAuth(e, 'signin'));
  $('signup-form').addEventListener('submit', (e) => submitAuth(e, 'signup'));
  $('signout').addEventListener('click', signOut);
  $('message-close').addEventListener('click', hideMessage);
  $('retry').addEventListener('click', boot);
  $('run').addEventListener('click', () => startRun());
  $('stop').addEventListener('click', () => stopRun());
  $('eof').addEventListener('click', () => {
    sendEof();
    if (state.run) state.terminal.focus();
  });
  $('clear').addEventListener('click', () => state.terminal && state.terminal.clearScreen());
  $('language').addEventListener('change', (e) => {
    switchLanguage(e.target.value);
  });
  $('reset-example').addEventListener('click', () => {
    const lang = findLanguage(state.language);
    if (lang) replaceCode(lang.example || '');
    state.editor.focus();
  });
  $('history-refresh').addEventListener('click', () => loadHistory({ loud: true }));
  $('history-more').addEventListener('click', () => loadHistory({ more: true, loud: true }));
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.key !== 'Enter' || !(e.ctrlKey || e.metaKey)) return;
    if ($('app-view').hidden) return;
    e.preventDefault();
    startRun();
  });
  darkScheme.addEventListener('change', applyTheme);
  window.addEventListener('beforeunload', () => {
    clearTimeout(draftTimer);
    saveDraft();
  });
  if (PROJECT_ID !== null) {
    $('project-badge').textContent = `Project ${PROJECT_ID}`;
    $('project-badge').hidden = false;
    $('history-title').textContent = `History: project ${PROJECT_ID}`;
    document.title = `Project ${PROJECT_ID} · execstream`;
  }
}

wire();
loadMonaco().catch(() => {
  /* reported when the editor is needed */
});
boot();
