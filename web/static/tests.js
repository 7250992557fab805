// Test cases: the panel to write them, and the checklist of a test run's results.
import { $ } from './state.js';

const COMPARES = ['trim', 'exact', 'tokens', 'float'];

function field(row, name) {
  return row.querySelector(`[data-field="${name}"]`);
}

export function addTestRow(values = {}) {
  const row = document.createElement('li');
  row.className = 'test-row';
  row.setAttribute('data-testid', 'test-row');
  const number = $('tests-list').children.length + 1;
  row.innerHTML = `
    <input data-field="name" aria-label="Test name" placeholder="name">
    <textarea data-field="stdin" rows="2" aria-label="Input" placeholder="stdin"></textarea>
    <textarea data-field="expected" rows="2" aria-label="Expected output" placeholder="expected stdout"></textarea>
    <select data-field="compare" aria-label="Comparison">${COMPARES.map((c) => `<option>${c}</option>`).join('')}</select>
    <button type="button" class="subtle" data-field="remove" aria-label="Remove test">&times;</button>`;
  field(row, 'name').value = values.name ?? `test ${number}`;
  field(row, 'stdin').value = values.stdin ?? '';
  field(row, 'expected').value = values.expected_stdout ?? '';
  field(row, 'compare').value = values.compare ?? 'trim';
  field(row, 'remove').addEventListener('click', () => {
    row.remove();
    updateTestsUi();
  });
  $('tests-list').append(row);
  updateTestsUi();
}

export function testCases() {
  return [...$('tests-list').children].map((row) => ({
    name: field(row, 'name').value.trim() || 'test',
    stdin: field(row, 'stdin').value,
    expected_stdout: field(row, 'expected').value,
    compare: field(row, 'compare').value,
  }));
}

function updateTestsUi() {
  $('run-tests').disabled = $('tests-list').children.length === 0;
}

export function clearResults() {
  $('test-results').replaceChildren();
  $('test-results').hidden = true;
}

export function showTestResult(msg) {
  const list = $('test-results');
  const item = document.createElement('li');
  item.className = msg.passed ? 'test-passed' : 'test-failed';
  item.setAttribute('data-testid', 'test-result');
  item.dataset.passed = String(Boolean(msg.passed));
  const mark = msg.passed ? '\u2713' : '\u2717';
  const head = document.createElement('span');
  head.textContent = `${mark} ${msg.name} (${msg.status}, ${Number(msg.time).toFixed(2)} s)`;
  item.append(head);
  if (!msg.passed && msg.diff) {
    const diff = document.createElement('pre');
    diff.className = 'test-diff';
    diff.setAttribute('data-testid', 'test-diff');
    diff.textContent = msg.diff;
    item.append(diff);
  }
  list.append(item);
  list.hidden = false;
}

// cpu_time and memory_peak of the exit frame, as "CPU 0.12 s · 14.2 MB".
export function usageText(msg) {
  const parts = [];
  if (typeof msg.cpu_time === 'number') parts.push(`CPU ${msg.cpu_time.toFixed(2)} s`);
  if (typeof msg.memory_peak === 'number') parts.push(`${(msg.memory_peak / 1e6).toFixed(1)} MB`);
  return parts.join(' · ');
}

export function summary(msg) {
  if (msg.tests_total == null) return '';
  return `${msg.tests_passed}/${msg.tests_total} tests passed`;
}

// The checklist's last line, once the exit frame says how many passed.
export function showTestSummary(msg) {
  const text = summary(msg);
  if (!text) return;
  const item = document.createElement('li');
  item.className = 'test-summary';
  item.setAttribute('data-testid', 'test-summary');
  item.textContent = text;
  $('test-results').append(item);
  $('test-results').hidden = false;
}

export function initTests(onRun) {
  $('add-test').addEventListener('click', () => addTestRow());
  $('run-tests').addEventListener('click', onRun);
  updateTestsUi();
}
