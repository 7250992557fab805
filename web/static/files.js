// The files of a multi-file program: a tab bar over the editor. The first tab is the entry
// file (the program's `code`, the editor's own model); the others are sent as `files`
// (docs/protocol.md). Each language keeps its own extra files, saved like the draft.

import { storageGet, storageSet } from './format.js';
import { $, findLanguage, state, storagePrefix } from './state.js';

const MAX_FILES = 20;
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(\/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,3}$/;

// { name, model } of the current language's extra files; `active` is null for the entry file.
const files = { list: [], active: null, language: null };

function filesKey(languageId) {
  return `${storagePrefix()}.files.${languageId}`;
}

function save() {
  if (!files.language) return;
  storageSet(filesKey(files.language), JSON.stringify(programFiles()));
}

/** The extra files as the run message wants them. */
export function programFiles() {
  return files.list.map((file) => ({ name: file.name, content: file.model.getValue() }));
}

function entryName() {
  const lang = findLanguage(state.language);
  if (!lang) return 'main';
  if (!lang.file_name.includes('{class}')) return lang.file_name;
  const found = /\bpublic\s+(?:(?:final|abstract)\s+)*class\s+(\w+)/.exec(state.model ? state.model.getValue() : '');
  return lang.file_name.replace('{class}', found ? found[1] : 'Main');
}

function modelFor(name, content) {
  const monaco = state.monaco;
  const ext = name.includes('.') ? name.slice(name.lastIndexOf('.')) : '';
  const known = monaco.languages.getLanguages().find((l) => (l.extensions || []).includes(ext));
  const model = monaco.editor.createModel(content, known ? known.id : 'plaintext');
  model.onDidChangeContent(save);
  return model;
}

/** Loads the language's extra files (after the editor switched to its entry model). */
export function loadFiles(languageId) {
  for (const file of files.list) file.model.dispose();
  files.list = [];
  files.active = null;
  files.language = languageId;
  let saved = [];
  try {
    saved = JSON.parse(storageGet(filesKey(languageId)) || '[]');
  } catch {
    saved = [];
  }
  setFiles(Array.isArray(saved) ? saved : [], false);
}

/** Replaces the extra files (a run opened from history); the entry tab is shown. */
export function setFiles(list, persist = true) {
  for (const file of files.list) file.model.dispose();
  files.list = (list || [])
    .filter((f) => f && typeof f.name === 'string')
    .map((f) => ({ name: f.name, model: modelFor(f.name, String(f.content ?? '')) }));
  files.active = null;
  if (state.editor && state.model) state.editor.setModel(state.model);
  if (persist) save();
  render();
}

/** Shows the entry file (before its text is replaced, for example). */
export function showEntry() {
  select(null);
}

function select(name) {
  const file = files.list.find((f) => f.name === name) || null;
  files.active = file ? file.name : null;
  if (state.editor) state.editor.setModel(file ? file.model : state.model);
  render();
}

function askName(title, current = '') {
  const name = window.prompt(title, current);
  if (name === null) return null;
  const trimmed = name.trim();
  if (!NAME.test(trimmed) || trimmed.split('/').includes('..')) {
    window.alert('Use letters, digits, "_", "." and "-" (not starting with "."), with "/" between folders.');
    return null;
  }
  if (trimmed === entryName() || files.list.some((f) => f.name === trimmed)) {
    window.alert(`There is already a file named ${trimmed}.`);
    return null;
  }
  return trimmed;
}

function addFile() {
  if (files.list.length >= MAX_FILES) {
    window.alert(`A program has at most ${MAX_FILES} files besides the main one.`);
    return;
  }
  const lang = findLanguage(state.language);
  const name = askName('New file name', lang ? `util${lang.extension}` : '');
  if (!name) return;
  files.list.push({ name, model: modelFor(name, '') });
  save();
  select(name);
}

function renameFile(file) {
  const name = askName('Rename file', file.name);
  if (!name) return;
  const content = file.model.getValue();
  file.model.dispose();
  file.name = name;
  file.model = modelFor(name, content);
  save();
  select(name);
}

function removeFile(file) {
  if (!window.confirm(`Remove ${file.name}?`)) return;
  files.list = files.list.filter((f) => f !== file);
  file.model.dispose();
  save();
  select(null);
}

function tab(label, active, onSelect) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'file-tab';
  button.setAttribute('role', 'tab');
  button.setAttribute('aria-selected', active ? 'true' : 'false');
  button.dataset.testid = 'file-tab';
  button.textContent = label;
  button.addEventListener('click', onSelect);
  return button;
}

function smallButton(label, title, testid, onClick) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'icon-button file-action';
  button.title = title;
  button.setAttribute('aria-label', title);
  button.dataset.testid = testid;
  button.textContent = label;
  button.addEventListener('click', onClick);
  return button;
}

/** Draws the tab bar: the entry file, the others (each with rename and remove), and +. */
export function render() {
  const bar = $('file-tabs');
  if (!bar) return;
  bar.replaceChildren();
  bar.append(tab(entryName(), files.active === null, () => select(null)));
  for (const file of files.list) {
    const group = document.createElement('span');
    group.className = 'file-tab-group';
    group.append(
      tab(file.name, files.active === file.name, () => select(file.name)),
      smallButton('✎', `Rename ${file.name}`, 'file-rename', () => renameFile(file)),
      smallButton('×', `Remove ${file.name}`, 'file-remove', () => removeFile(file)),
    );
    bar.append(group);
  }
  bar.append(smallButton('+', 'Add a file', 'file-add', addFile));
}
