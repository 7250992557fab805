// Plots a run showed (image frames), under its text output, in the order they came.
import { $ } from './state.js';

export function clearImages() {
  const box = $('images');
  box.replaceChildren();
  box.hidden = true;
}

export function showImage(msg) {
  if (msg.mime !== 'image/png' || typeof msg.data !== 'string') return;
  const box = $('images');
  const img = document.createElement('img');
  img.src = `data:image/png;base64,${msg.data}`;
  img.alt = `Plot ${box.children.length + 1} of the program`;
  img.dataset.testid = 'plot';
  img.setAttribute('data-testid', 'plot');
  box.append(img);
  box.hidden = false;
}
