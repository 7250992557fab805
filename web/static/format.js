// Small pure helpers: how errors, times, sizes and exits read on the page; local storage.

import { ApiError } from './api.js';

export function describe(err) {
  if (err instanceof ApiError) return err.describe();
  return err && err.message ? err.message : String(err);
}

export function formatSeconds(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  return `${seconds.toFixed(1)} s`;
}

/** 10240 -> "10 KB", 2048 -> "2 KB", 1000 -> "1000 bytes": exact, as the server counts. */
export function formatBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '';
  if (bytes >= 1048576 && bytes % 1048576 === 0) return `${bytes / 1048576} MB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KB`;
  return `${bytes} bytes`;
}

export function parseDate(text) {
  if (!text) return null;
  // Timestamps without a zone are the server's UTC.
  const zoned = /(?:[zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`;
  const date = new Date(zoned);
  return Number.isNaN(date.getTime()) ? null : date;
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
export function timeAgo(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), 'hour');
  if (abs < 86400 * 30) return relativeFormat.format(Math.round(seconds / 86400), 'day');
  return date.toLocaleDateString();
}

export function exitText(result) {
  if (result.signal) return `signal ${result.signal}`;
  if (result.exit_code !== null && result.exit_code !== undefined) return `exit code ${result.exit_code}`;
  return '';
}

export function noteKind(status) {
  if (status === 'success') return 'info';
  if (status === 'error' || status === 'internal_error') return 'error';
  return 'warning';
}

export function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function storageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* storage full or disabled: the in-memory copy still works */
  }
}
