// The examples the server gives for each language (the languages endpoint's `examples`):
// a hello world, a program that reads input, and for some a plot. Loading one replaces the code as one
// undoable edit.

import { replaceCode } from './editor.js';
import { findLanguage, state } from './state.js';

/** The example of the editor's language: `kind` is 'hello', 'input' or 'plot'. */
export function exampleFor(lang, kind) {
  return (lang.examples || {})[kind] || '';
}

export function loadExample(kind) {
  const lang = findLanguage(state.language);
  if (!lang || !state.editor) return;
  replaceCode(exampleFor(lang, kind));
  state.editor.focus();
}
