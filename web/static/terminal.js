// The output panel: an xterm.js terminal with a cooked-mode line discipline for stdin.
// Typed characters are echoed locally and kept in a line buffer; Enter hands the line
// (with "\n") to onLine, Backspace edits the buffer, Ctrl+D asks for end-of-file, Ctrl+C
// asks for an interrupt.

const RED = '\x1b[31m';
const YELLOW = '\x1b[33m';
const DIM = '\x1b[2m';
const RESET_FG = '\x1b[39m';
const RESET_ALL = '\x1b[0m';
const SHOW_CURSOR = '\x1b[?25h';
const HIDE_CURSOR = '\x1b[?25l';

// Escape sequences (arrow keys, function keys...) have no meaning in a cooked line.
const ESCAPES = /\x1b(?:\[[0-9;?]*[ -/]*[@-~]|O.|.)?/gs;
const WIDE = /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1faff}\u{20000}-\u{3fffd}]/u;

const THEMES = {
  light: {
    background: '#ffffff',
    foreground: '#1f2328',
    cursor: '#1f2328',
    cursorAccent: '#ffffff',
    selectionBackground: '#b6d3ff',
    black: '#1f2328',
    red: '#c0262d',
    green: '#1a7f37',
    yellow: '#8a6100',
    blue: '#0b5cd5',
    magenta: '#8250df',
    cyan: '#1b7c83',
    white: '#6e7781',
    brightBlack: '#57606a',
    brightRed: '#a40e26',
    brightGreen: '#116329',
    brightYellow: '#7d4e00',
    brightBlue: '#0550ae',
    brightMagenta: '#6639ba',
    brightCyan: '#136061',
    brightWhite: '#8c959f',
  },
  dark: {
    background: '#1e1e1e',
    foreground: '#d4d4d4',
    cursor: '#d4d4d4',
    cursorAccent: '#1e1e1e',
    selectionBackground: '#264f78',
    black: '#000000',
    red: '#f47067',
    green: '#6bc46d',
    yellow: '#e5c07b',
    blue: '#6cb6ff',
    magenta: '#dcbdfb',
    cyan: '#56d4dd',
    white: '#d4d4d4',
    brightBlack: '#8b949e',
    brightRed: '#ff938a',
    brightGreen: '#8ddb8c',
    brightYellow: '#f0d399',
    brightBlue: '#96d0ff',
    brightMagenta: '#eedcff',
    brightCyan: '#b3f0ff',
    brightWhite: '#ffffff',
  },
};

function toCrlf(text) {
  return text.replace(/\r?\n/g, '\r\n');
}

export class OutputTerminal {
  /**
   * @param {HTMLElement} container
   * @param {{onLine(line: string): void, onEof(): void, onInterrupt(): void, onRunShortcut(): void}} handlers
   */
  constructor(container, handlers) {
    if (typeof window.Terminal !== 'function' || !window.FitAddon) {
      throw new Error('xterm.js did not load (/vendor/@xterm/xterm/lib/xterm.js)');
    }
    this.handlers = handlers;
    this.line = '';
    this.accepting = false;
    this.atLineStart = true;
    this.term = new window.Terminal({
      convertEol: false,
      cursorBlink: false,
      cursorStyle: 'bar',
      cursorInactiveStyle: 'none',
      disableStdin: true,
      fontFamily: 'ui-monospace, "Cascadia Mono", "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
      fontSize: 14,
      lineHeight: 1.15,
      scrollback: 5000,
      allowProposedApi: false,
    });
    this.fitAddon = new window.FitAddon.FitAddon();
    this.term.loadAddon(this.fitAddon);
    this.term.open(container);
    this.term.write(HIDE_CURSOR);
    this.term.textarea?.setAttribute('aria-label', 'Program output and input');
    this.term.textarea?.setAttribute('data-testid', 'terminal-input');
    this.term.onData((data) => this._input(data));
    this.term.attachCustomKeyEventHandler((event) => this._key(event));
    this._fitPending = false;
    new ResizeObserver(() => this.fit()).observe(container);
    this.fit();
  }

  setTheme(dark) {
    this.term.options.theme = dark ? THEMES.dark : THEMES.light;
  }

  fit() {
    if (this._fitPending) return;
    this._fitPending = true;
    requestAnimationFrame(() => {
      this._fitPending = false;
      const el = this.term.element;
      if (!el || !el.offsetParent || el.clientWidth === 0 || el.clientHeight === 0) return;
      try {
        this.fitAddon.fit();
      } catch {
        /* not laid out yet */
      }
    });
  }

  focus() {
    this.term.focus();
  }

  hasFocus() {
    const el = this.term.element;
    return !!el && el.contains(document.activeElement);
  }

  reset() {
    this.term.reset();
    this.line = '';
    this.atLineStart = true;
    if (!this.accepting) this.term.write(HIDE_CURSOR);
  }

  /** Program output; stderr is shown in red. */
  writeOutput(data, stream) {
    if (!data) return;
    const text = toCrlf(data);
    this.term.write(stream === 'stderr' ? `${RED}${text}${RESET_FG}` : text);
    this.atLineStart = /[\r\n]$/.test(data);
  }

  /** A note from the editor itself (not the program), on a line of its own. */
  writeNote(text, kind = 'info') {
    const colour = kind === 'error' ? RED : kind === 'warning' ? YELLOW : DIM;
    const lead = this.atLineStart ? '' : '\r\n';
    this.term.write(`${lead}${colour}${toCrlf(text)}${RESET_ALL}\r\n`);
    this.atLineStart = true;
  }

  /** Start or stop taking keystrokes for the program's stdin. */
  setAccepting(accepting) {
    this.accepting = accepting;
    this.line = '';
    this.term.options.disableStdin = !accepting;
    this.term.options.cursorBlink = accepting;
    this.term.options.cursorStyle = accepting ? 'block' : 'bar';
    this.term.options.cursorInactiveStyle = accepting ? 'outline' : 'none';
    this.term.write(accepting ? SHOW_CURSOR : HIDE_CURSOR);
  }

  /** Clears the screen but keeps a line being typed for a running program. */
  clearScreen() {
    const { accepting, line } = this;
    this.reset();
    if (accepting) {
      this.setAccepting(true);
      this.line = line;
      if (line) {
        this.term.write(line);
        this.atLineStart = false;
      }
    }
  }

  /** Hand over the partially typed line (used before end-of-file). */
  takePartialLine() {
    const line = this.line;
    this.line = '';
    return line;
  }

  _key(event) {
    if (event.type !== 'keydown') return true;
    const mod = event.ctrlKey || event.metaKey;
    if (mod && event.key === 'Enter') {
      event.preventDefault();
      this.handlers.onRunShortcut();
      return false;
    }
    // Ctrl/Cmd+C with a selection copies instead of interrupting.
    if (mod && (event.key === 'c' || event.key === 'C') && this.term.hasSelection()) return false;
    // Tab and Shift+Tab leave the terminal, so keyboard users are never trapped in it.
    if (event.key === 'Tab' && !event.ctrlKey && !event.altKey && !event.metaKey) return false;
    return true;
  }

  _input(raw) {
    if (!this.accepting) return;
    const data = raw.replace(ESCAPES, '');
    let echo = '';
    const flush = () => {
      if (echo) this.term.write(echo);
      echo = '';
    };
    for (let i = 0; i < data.length; ) {
      const ch = String.fromCodePoint(data.codePointAt(i));
      i += ch.length;
      const code = ch.codePointAt(0);
      if (ch === '\r' || ch === '\n') {
        if (ch === '\r' && data[i] === '\n') i += 1;
        echo += '\r\n';
        const line = `${this.line}\n`;
        this.line = '';
        flush();
        this.atLineStart = true;
        this.handlers.onLine(line);
      } else if (ch === '\x7f' || ch === '\b') {
        if (this.line) {
          const chars = Array.from(this.line);
          const last = chars.pop();
          this.line = chars.join('');
          echo += WIDE.test(last) ? '\b\b  \b\b' : '\b \b';
        }
      } else if (ch === '\x15') {
        // Ctrl+U: erase the whole line.
        for (const c of Array.from(this.line)) echo += WIDE.test(c) ? '\b\b  \b\b' : '\b \b';
        this.line = '';
      } else if (ch === '\x04') {
        flush();
        this.handlers.onEof();
      } else if (ch === '\x03') {
        echo += '^C';
        this.line = '';
        flush();
        this.atLineStart = false;
        this.handlers.onInterrupt();
      } else if (ch === '\t' || (code >= 0x20 && code !== 0x7f && !(code >= 0x80 && code < 0xa0))) {
        this.line += ch;
        echo += ch;
        this.atLineStart = false;
      }
      // Any other control character has no meaning here and is dropped.
      if (!this.accepting) break; // a handler ended the input (e.g. end-of-file)
    }
    flush();
  }
}
