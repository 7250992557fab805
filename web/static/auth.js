// Signing in and out, and entering the editor once we know who the user is.

import * as api from './api.js';
import { ensureEditor, loadMonaco, saveDraft, switchLanguage } from './editor.js';
import { describe, storageGet } from './format.js';
import { loadHistory, renderHistory } from './history.js';
import { abandonRun, announceLanguage, ensureSocket, ensureTerminal } from './run.js';
import { resumeRun } from './reattach.js';
import { $, findLanguage, state, storagePrefix } from './state.js';
import { hideMessage, setIdleStatus, showMessage, showView, updateRunUi } from './ui.js';

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

export async function boot() {
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

export function handleUnauthorized() {
  if (!state.user && !$('auth-view').hidden) return;
  leaveApp({ clearDrafts: false });
  showAuth('Your session has ended. Please sign in again.');
}

export function signOut() {
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

export async function submitAuth(event, mode) {
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
  announceLanguage();
  updateRunUi();
  resumeRun();
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
