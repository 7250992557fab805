// One WebSocket to /api/v1/code/ws, opened on demand and reopened on the next run after a loss.

const OPEN_TIMEOUT_MS = 10000;

export class SocketClosedError extends Error {
  constructor(message, event) {
    super(message);
    this.name = 'SocketClosedError';
    this.event = event;
  }
}

export class RunSocket {
  /**
   * @param {() => string} url  builds the URL (with the current token) for each connection
   * @param {{onMessage(msg: object): void, onClose(info: {code: number, reason: string, wasOpen: boolean, expected: boolean}): void, onState(state: string): void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.opening = null;
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Resolves once a socket is open; rejects with SocketClosedError when it cannot be opened. */
  ensureOpen() {
    if (this.isOpen) return Promise.resolve();
    if (this.opening) return this.opening;
    this.handlers.onState('connecting');
    this.opening = new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url());
      } catch (err) {
        this.opening = null;
        this.handlers.onState('closed');
        reject(new SocketClosedError(`Cannot open the connection: ${err.message}`));
        return;
      }
      this.ws = ws;
      let opened = false;
      const timer = setTimeout(() => {
        if (!opened) ws.close();
      }, OPEN_TIMEOUT_MS);
      ws.addEventListener('open', () => {
        opened = true;
        clearTimeout(timer);
        this.opening = null;
        this.handlers.onState('open');
        resolve();
      });
      ws.addEventListener('message', (event) => {
        if (this.ws !== ws) return;
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          msg = { type: 'error', code: 'invalid_frame', message: `The server sent a frame that is not JSON: ${String(event.data).slice(0, 200)}` };
        }
        this.handlers.onMessage(msg);
      });
      ws.addEventListener('close', (event) => {
        clearTimeout(timer);
        const current = this.ws === ws;
        if (current) this.ws = null;
        const expected = ws._expectedClose === true;
        if (!opened) {
          this.opening = null;
          if (current) this.handlers.onState('closed');
          reject(new SocketClosedError('Could not connect to the run server', event));
          return;
        }
        if (current) {
          this.handlers.onState('closed');
          this.handlers.onClose({ code: event.code, reason: event.reason, wasOpen: true, expected });
        }
      });
    });
    return this.opening;
  }

  /** Sends one JSON frame; false when there is no open socket. */
  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Closes on purpose (sign-out): onClose is told it was expected. */
  close() {
    const ws = this.ws;
    if (!ws) return;
    ws._expectedClose = true;
    this.ws = null;
    this.opening = null;
    ws.close(1000, 'client closed');
    this.handlers.onState('closed');
  }
}
