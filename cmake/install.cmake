# Installation: header, libraries, tool, CMake package (clsm::clsoftmax) and pkg-config file.
include(CMakePackageConfigHelpers)

set(_clsm_targets clsoftmax_static)
if(BUILD_SHARED_LIBS)
  list(APPEND _clsm_targets clsoftmax)
endif()
install(TARGETS ${_clsm_targets} EXPORT clsoftmaxTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES include/clsoftmax.h include/clsoftmax_mpi.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS clsoftmax_tool RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(EXPORT clsoftmaxTargets NAMESPACE clsm:: FILE clsoftmaxTargets.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clsoftmax)
configure_package_config_file(cmake/clsoftmaxConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/clsoftmaxConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clsoftmax)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/clsoftmaxConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/clsoftmaxConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/clsoftmaxConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clsoftmax)

# The .pc file finds its prefix from its own location, so an installed tree
# can be moved (and CI can install to a temporary prefix).
file(RELATIVE_PATH CLSM_PC_UP "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
configure_file(cmake/clsoftmax.pc.in ${CMAKE_CURRENT_BINARY_DIR}/clsoftmax.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/clsoftmax.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
