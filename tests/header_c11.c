/* The public header alone, as strict C11 (-Wpedantic -Werror). */
#include "clsoftmax.h"
int clsm_header_c11_compiles(void) { return CLSM_SUCCESS + CLSM_VERSION_NUMBER * 0; }
