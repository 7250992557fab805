"""matplotlib's backend for programs run by execstream: figures leave as PNG frames.

``plt.show()`` sends every open figure (then closes them, as a window would on close);
``savefig`` writes its file and also sends the figure. A frame goes to stderr with the run's
key (sandbox/sidechannel.py), never to stdout: the server takes it out of the stream and
sends it as an ``image`` frame. The launcher puts the key in EXECSTREAM_PLOT_KEY before the
program starts (and after this module may have been imported, warm).
"""

import io
import os
import sys

from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

MARK = b"\x1eexecstream:"


def send(figure) -> None:
    """Write one figure as a PNG frame to stderr, in one go, after any text already out."""
    key = os.environ.get("EXECSTREAM_PLOT_KEY", "")
    if not key:
        return
    buffer = io.BytesIO()
    figure.canvas.print_png(buffer)
    png = buffer.getvalue()
    figure._execstream_sent = True
    sys.stderr.flush()
    data = MARK + key.encode() + b":image:%d\n" % len(png) + png
    while data:
        data = data[os.write(2, data) :]


class FigureCanvasExecstream(FigureCanvasAgg):
    def print_figure(self, *args, **kwargs):
        result = super().print_figure(*args, **kwargs)
        send(self.figure)
        return result


class FigureManagerExecstream(FigureManagerBase):
    def show(self):
        send(self.canvas.figure)


def show(*args, **kwargs):
    for manager in Gcf.get_all_fig_managers():
        figure = manager.canvas.figure
        # A figure saved (and sent) and not changed since is not sent twice.
        if not (getattr(figure, "_execstream_sent", False) and not figure.stale):
            send(figure)
    Gcf.destroy_all()


FigureCanvas = FigureCanvasExecstream
FigureManager = FigureManagerExecstream
