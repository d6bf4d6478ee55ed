# SPDX-License-Identifier: Apache-2.0
# Run at install time (install(SCRIPT) in client/CMakeLists.txt): writes
# rmpool.pc for the prefix being installed to. CMAKE_INSTALL_PREFIX here
# is that prefix (cmake --install --prefix DIR overrides the configured
# one); DESTDIR is not part of it, as a package wants.
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${RMP_PC_${_dir}}")
    set(RMP_PC_${_dir}_FULL "${RMP_PC_${_dir}}")
  else()
    set(RMP_PC_${_dir}_FULL "\${prefix}/${RMP_PC_${_dir}}")
  endif()
endforeach()
set(RMP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
configure_file("${RMP_PC_IN}" "${RMP_PC_OUT}" @ONLY)
