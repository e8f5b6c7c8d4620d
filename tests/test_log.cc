// placeholder (issue 7)
#include <gtest/gtest.h>
