// The public header alone, as C++ (-Wpedantic -Werror).
#include "clsoftmax.h"
int clsm_header_cxx_compiles() { return static_cast<int>(CLSM_SUCCESS) + static_cast<int>(CLSM_VERSION_NUMBER) * 0; }
