// What one run may use, as the server says (GET /api/v1/limits): the page never hard-codes it.

import { request } from './api.js';
import { formatBytes } from './format.js';

export const limits = {
  output_bytes: null,
  code_bytes: null,
  stdin_bytes: null,
  stdin_window: null,
  max_wall_time: null,
  max_frame_bytes: null,
};

/** Loads the limits once; the page works without them, it just says less. */
export async function loadLimits() {
  try {
    const { data } = await request('GET', '/api/v1/limits', { auth: false });
    if (data && typeof data === 'object') Object.assign(limits, data);
  } catch {
    /* shown without numbers */
  }
  return limits;
}

/** "Output was cut at 10 KB", with the server's cap (or without a number if unknown). */
export function truncatedText() {
  const cap = formatBytes(limits.output_bytes);
  return cap ? `Output was cut at ${cap}` : 'Output was cut at the output limit';
}
