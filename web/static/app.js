// The execstream editor: sign-in, Monaco editor, live runs over the WebSocket, run history.
// Native ES modules, one concern each, no build step; Monaco comes from its AMD build and
// xterm.js from its UMD build (see index.html).
//
//   state.js    what the page holds          ui.js       views, messages, status bar
//   auth.js     sign-in, entering the editor editor.js   Monaco and drafts
//   run.js      runs over the WebSocket      history.js  the history panel
//   limits.js   the server's limits          format.js   pure helpers
//   examples.js each language's examples

import * as api from './api.js';
import { boot, handleUnauthorized, signOut, submitAuth } from './auth.js';
import { applyTheme, flushDraft, loadMonaco, switchLanguage } from './editor.js';
import { loadExample } from './examples.js';
import { loadHistory } from './history.js';
import { loadLimits } from './limits.js';
import { announceLanguage, startRun, stopRun, sendEofFromButton } from './run.js';
import { initTests, testCases } from './tests.js';
import { $, PROJECT_ID, darkScheme, state } from './state.js';
import { hideMessage, showLimits, updateRunUi } from './ui.js';

function wire() {
  api.onUnauthorized(handleUnauthorized);
  $('signin-form').addEventListener('submit', (e) => submitAuth(e, 'signin'));
  $('signup-form').addEventListener('submit', (e) => submitAuth(e, 'signup'));
  $('signout').addEventListener('click', signOut);
  $('message-close').addEventListener('click', hideMessage);
  $('retry').addEventListener('click', boot);
  $('run').addEventListener('click', () => startRun());
  initTests(() => startRun({ tests: testCases() }));
  $('stop').addEventListener('click', () => stopRun());
  $('eof').addEventListener('click', sendEofFromButton);
  $('clear').addEventListener('click', () => state.terminal && state.terminal.clearScreen());
  $('language').addEventListener('change', (e) => {
    switchLanguage(e.target.value);
    updateRunUi();
    announceLanguage();
  });
  $('reset-example').addEventListener('click', () => loadExample('hello'));
  $('input-example').addEventListener('click', () => loadExample('input'));
  $('plot-example').addEventListener('click', () => loadExample('plot'));
  $('history-refresh').addEventListener('click', () => loadHistory({ loud: true }));
  $('history-more').addEventListener('click', () => loadHistory({ more: true, loud: true }));
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.key !== 'Enter' || !(e.ctrlKey || e.metaKey)) return;
    if ($('app-view').hidden) return;
    e.preventDefault();
    startRun();
  });
  darkScheme.addEventListener('change', applyTheme);
  window.addEventListener('beforeunload', flushDraft);
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
loadLimits().then(showLimits);
boot();
