// What the page holds while it lives: the signed-in user, the editor, the run, the history.

export const $ = (id) => document.getElementById(id);

export const PROJECT_ID = (() => {
  const match = location.pathname.match(/^\/projects\/(\d+)\/editor\/?$/);
  return match ? Number(match[1]) : null;
})();

export const darkScheme = window.matchMedia('(prefers-color-scheme: dark)');

export const state = {
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

export function findLanguage(id) {
  return state.languages.find((lang) => lang.id === id) || null;
}

export function storagePrefix() {
  return `execstream.${state.user ? state.user.id : 'anon'}.${PROJECT_ID ?? 'scratch'}`;
}
