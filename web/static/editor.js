// The code editor: Monaco (its AMD build), one model per language, drafts kept per language.

import { loadFiles, render as renderFiles, showEntry } from './files.js';
import { storageGet, storageSet } from './format.js';
import { announceIfChanged, startRun } from './run.js';
import { $, darkScheme, findLanguage, state, storagePrefix } from './state.js';

const MONACO_BASE = '/vendor/monaco-editor/min/vs';

let monacoPromise = null;
export function loadMonaco() {
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

export function ensureEditor(monaco) {
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
  if (lang.monaco && known.some((l) => l.id === lang.monaco)) return lang.monaco;
  const byExtension = known.find((l) => (l.extensions || []).includes(lang.extension));
  return byExtension ? byExtension.id : 'plaintext';
}

function draftKey(languageId) {
  return `${storagePrefix()}.draft.${languageId}`;
}

export function saveDraft() {
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

// A program that starts or stops importing matplotlib wants another kind of warm sandbox.
let preloadTimer = null;
function schedulePreloadCheck() {
  clearTimeout(preloadTimer);
  preloadTimer = setTimeout(announceIfChanged, 500);
}

/** Saves the draft now (the page is going away). */
export function flushDraft() {
  clearTimeout(draftTimer);
  saveDraft();
}

export function switchLanguage(languageId) {
  const lang = findLanguage(languageId);
  if (!lang || !state.editor) return;
  if (state.model) flushDraft();
  if (state.model) state.model.dispose();
  state.language = lang.id;
  $('language').value = lang.id;
  const text = state.drafts.get(lang.id) ?? storageGet(draftKey(lang.id)) ?? lang.example ?? '';
  // One model at a time: TypeScript's service would otherwise see every open file as one program.
  state.model = state.monaco.editor.createModel(text, monacoLanguageFor(lang));
  state.model.onDidChangeContent(scheduleDraftSave);
  state.model.onDidChangeContent(schedulePreloadCheck);
  // Java's entry file is named after its public class: the tab follows the code.
  state.model.onDidChangeContent(renderFiles);
  state.editor.setModel(state.model);
  loadFiles(lang.id);
  storageSet(`${storagePrefix()}.language`, lang.id);
}

/** Replaces the editor's text as one undoable edit. */
export function replaceCode(text) {
  showEntry();
  const editor = state.editor;
  editor.pushUndoStop();
  editor.executeEdits('execstream', [{ range: state.model.getFullModelRange(), text, forceMoveMarkers: true }]);
  editor.pushUndoStop();
  editor.setPosition({ lineNumber: 1, column: 1 });
  editor.revealLine(1);
  saveDraft();
}

export function applyTheme() {
  const dark = darkScheme.matches;
  if (state.monaco) state.monaco.editor.setTheme(dark ? 'vs-dark' : 'vs');
  if (state.terminal) state.terminal.setTheme(dark);
}
