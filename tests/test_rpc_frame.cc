// placeholder: filled in by the codec work (issue 4)
#include <gtest/gtest.h>
