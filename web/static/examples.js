// The examples the server gives for each language (the languages endpoint's `examples`):
// a hello world, and a program that reads input. Loading one replaces the code as one
// undoable edit.

import { replaceCode } from './editor.js';
import { findLanguage, state } from './state.js';

/** The example of the editor's language: `kind` is 'hello' or 'input'. */
export function exampleFor(lang, kind) {
  return (lang.examples || {})[kind] || '';
}

export function loadExample(kind) {
  const lang = findLanguage(state.language);
  if (!lang || !state.editor) return;
  replaceCode(exampleFor(lang, kind));
  state.editor.focus();
}
