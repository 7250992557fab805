// The history panel: the user's runs, newest first, to open again or delete.

import * as api from './api.js';
import { describe, exitText, formatSeconds, noteKind, parseDate, timeAgo } from './format.js';
import { replaceCode, switchLanguage } from './editor.js';
import { setFiles } from './files.js';
import { truncatedText } from './limits.js';
import { $, PROJECT_ID, findLanguage, state } from './state.js';
import { clearImages, showImage } from './images.js';
import { clearResults, showTestResult, showTestSummary, summary, usageText } from './tests.js';
import { SHORT_LABELS, hideMessage, setResultStatus, showMessage, statusLabel, updateRunUi } from './ui.js';

const HISTORY_PAGE = 50;

/** Loads the first page again (or the next one). Failures show in the panel; `loud` also raises them. */
export async function loadHistory({ more = false, loud = false } = {}) {
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

export function renderHistory() {
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
  const created = parseDate(record.created_at);

  const title = document.createElement('span');
  title.className = 'history-code';
  title.textContent = firstLine(record.code);

  const meta = document.createElement('span');
  meta.className = 'history-meta';
  const badge = document.createElement('span');
  badge.className = `history-badge status-${record.status}`;
  badge.dataset.testid = 'history-badge';
  badge.textContent = SHORT_LABELS[record.status] || statusLabel(record.status);
  const facts = [
    lang ? lang.name : record.language,
    summary(record),
    formatSeconds(record.execution_time),
    usageText(record),
    created ? timeAgo(created) : '',
  ]
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

export function markOpenedHistory() {
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
  if (state.language !== lang.id) {
    switchLanguage(lang.id);
    updateRunUi();
  }
  replaceCode(record.code || '');
  setFiles(record.files || []);
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
  const parts = [
    statusLabel(record.status),
    summary(record),
    exitText(record),
    formatSeconds(record.execution_time),
    usageText(record),
  ];
  terminal.writeNote(`[${parts.filter(Boolean).join(' · ')}]`, noteKind(record.status));
  showStoredResults(record);
  if (record.status === 'interrupted') {
    terminal.writeNote('[The server stopped while this program ran: the output above is what had arrived.]', 'warning');
  }
  if (record.output_truncated) terminal.writeNote(`[${truncatedText()}]`, 'warning');
  setResultStatus(record);
  state.history.openedId = record.id;
  markOpenedHistory();
}

// A stored run's checklist and plots, as the run showed them. The list leaves the plots
// out (they are large): they come with the run's own record.
async function showStoredResults(record) {
  clearResults();
  clearImages();
  for (const test of record.tests || []) showTestResult(test);
  showTestSummary(record);
  if (!record.image_count) return;
  try {
    const { data } = await api.request('GET', `/api/v1/code/history/${encodeURIComponent(record.id)}`);
    if (state.history.openedId !== record.id) return; // another run was opened meanwhile
    for (const image of data.images || []) showImage(image);
  } catch (err) {
    showMessage(`Could not load the plots of run #${record.id}: ${describe(err)}`, 'warning');
  }
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
