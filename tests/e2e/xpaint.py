"""A tiny X client for the noVNC browser test: paints the root window one solid colour and
maps one undecorated window of a second colour, so a test can check both in the pixels a
VNC client shows. Talks to libX11 through ctypes (no toolkit, no extra package).

Usage: xpaint.py DISPLAY ROOT_RGB X Y WIDTH HEIGHT WINDOW_RGB   (colours as rrggbb hex)
Prints "ready" once both are drawn, then keeps the window until it is killed (SIGTERM).
"""

import ctypes
import ctypes.util
import signal
import sys


def main():
    if len(sys.argv) != 8:
        sys.exit("usage: xpaint.py DISPLAY ROOT_RGB X Y WIDTH HEIGHT WINDOW_RGB")
    display_name, root_rgb, x, y, width, height, window_rgb = sys.argv[1:]
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
    x11.XDefaultDepth.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XRootWindow.restype = ctypes.c_ulong
    x11.XRootWindow.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XSetWindowBackground.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    x11.XClearWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XCreateSimpleWindow.restype = ctypes.c_ulong
    x11.XCreateSimpleWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int,
                                        ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_ulong,
                                        ctypes.c_ulong]
    x11.XMapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]

    dpy = x11.XOpenDisplay(display_name.encode())
    if not dpy:
        sys.exit("xpaint: cannot open display %s" % display_name)
    screen = x11.XDefaultScreen(dpy)
    # On a 24-bit TrueColor visual (Xvnc -depth 24) a pixel value is 0xRRGGBB.
    if x11.XDefaultDepth(dpy, screen) != 24:
        sys.exit("xpaint: the display must have depth 24")
    root = x11.XRootWindow(dpy, screen)
    x11.XSetWindowBackground(dpy, root, int(root_rgb, 16))
    x11.XClearWindow(dpy, root)
    # No window manager runs, so the window appears exactly where it is put, unframed.
    win = x11.XCreateSimpleWindow(dpy, root, int(x), int(y), int(width), int(height), 0, 0, int(window_rgb, 16))
    x11.XMapWindow(dpy, win)
    x11.XSync(dpy, 0)
    print("ready", flush=True)
    while True:  # the window lives as long as this connection
        signal.pause()


if __name__ == "__main__":
    main()
