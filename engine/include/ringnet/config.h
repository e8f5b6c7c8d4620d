// SPDX-License-Identifier: MIT
/// @file
/// Included by every public ringnet header, before anything else of ringnet's: the
/// language check and the macros that mark what the shared libraries export.
///
/// libringnet and libringnet_proto are built with hidden visibility, so only declarations
/// marked here are part of their ABI; engine internals (event loops, pollers, socket
/// helpers...) stay out of the dynamic symbol tables.
#pragma once

// The headers use concepts, requires-clauses, std::span and defaulted comparisons: say so
// once, instead of a screen of errors from deep inside a header.
#if !defined(__cplusplus) || __cplusplus < 202002L
#error "ringnet needs C++20 (-std=c++20)"
#endif

// The [[gnu::]] spelling, not __attribute__: it may follow [[nodiscard]] on a class.
#if defined(__GNUC__) || defined(__clang__)
#define RINGNET_VISIBILITY_DEFAULT [[gnu::visibility("default")]]
#define RINGNET_VISIBILITY_HIDDEN [[gnu::visibility("hidden")]]
#else
/// Marks a declaration as exported (visibility "default"); empty on other compilers.
#define RINGNET_VISIBILITY_DEFAULT
/// Marks a declaration as library-private (visibility "hidden"); empty on other compilers.
#define RINGNET_VISIBILITY_HIDDEN
#endif

// Public API of libringnet (the engine): classes, free functions and the few variables
// inline code reaches across the library boundary. On a class it also exports the class's
// vtable and typeinfo, so a derived class or a dynamic_cast in the program sees the same
// ones as the library.
#ifndef RINGNET_EXPORT
#define RINGNET_EXPORT RINGNET_VISIBILITY_DEFAULT
#endif

// Public API of libringnet_proto. It expands like RINGNET_EXPORT on ELF, but marks the
// other library: a port where exporting and importing differ (a DLL), or a build that
// links one library statically and the other shared, needs to tell them apart.
#ifndef RINGNET_PROTO_EXPORT
#define RINGNET_PROTO_EXPORT RINGNET_VISIBILITY_DEFAULT
#endif

/// For a library-private type declared inside an exported class (an Impl behind a
/// pointer): a nested class takes its enclosing class's visibility unless told otherwise.
#define RINGNET_HIDDEN RINGNET_VISIBILITY_HIDDEN
