/* Status codes, OpenCL error names, dtypes and the version: the library's
 * static tables. */
#include "internal.h"

unsigned clsm_version_number(void) { return CLSM_VERSION_NUMBER; }

#define CLSM_STR2_(x) #x
#define CLSM_STR_(x) CLSM_STR2_(x)
const char *clsm_version_string(void) {
  return CLSM_STR_(CLSM_VERSION_MAJOR) "." CLSM_STR_(CLSM_VERSION_MINOR) "." CLSM_STR_(
      CLSM_VERSION_PATCH);
}

const char *clsm_status_string(clsm_status status) {
  switch (status) {
#define CLSM_STATUS_STRING_(name, value, msg) \
  case name:                                  \
    return msg;
    CLSM_STATUS_MAP(CLSM_STATUS_STRING_)
#undef CLSM_STATUS_STRING_
  default:
    return "unknown status";
  }
}

const char *clsm_status_name(clsm_status status) {
  switch (status) {
#define CLSM_STATUS_NAME_(name, value, msg) \
  case name:                                \
    return #name;
    CLSM_STATUS_MAP(CLSM_STATUS_NAME_)
#undef CLSM_STATUS_NAME_
  default:
    return "CLSM_UNKNOWN";
  }
}

const char *clsm_cl_error_name(cl_int err) {
  switch (err) {
#define E(x) \
  case x:    \
    return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
    E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
    E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
    E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
    E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
    E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
    E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
    E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
  case -1001:
    return "CL_PLATFORM_NOT_FOUND_KHR";
  default:
    return "CL_UNKNOWN_ERROR";
  }
}

size_t clsm_dtype_size(clsm_dtype dtype) {
  switch (dtype) {
  case CLSM_FLOAT32: return 4;
  case CLSM_FLOAT16: return 2;
  case CLSM_BFLOAT16: return 2;
  case CLSM_FLOAT64: return 8;
  case CLSM_INT64: return 8;
  case CLSM_INT32: return 4;
  case CLSM_UINT8: return 1;
  }
  return 0;
}

const char *clsm_dtype_name(clsm_dtype dtype) {
  switch (dtype) {
  case CLSM_FLOAT32: return "float32";
  case CLSM_FLOAT16: return "float16";
  case CLSM_BFLOAT16: return "bfloat16";
  case CLSM_FLOAT64: return "float64";
  case CLSM_INT64: return "int64";
  case CLSM_INT32: return "int32";
  case CLSM_UINT8: return "uint8";
  }
  return "unknown";
}
