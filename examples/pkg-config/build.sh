#!/bin/sh
# An installed ringnet through pkg-config (ringnet_proto for the codecs). For a custom
# prefix: PKG_CONFIG_PATH=<prefix>/<libdir>/pkgconfig, and LD_LIBRARY_PATH or an rpath to run.
c++ -std=c++20 -o echo echo.cc $(pkg-config --cflags --libs ringnet)
