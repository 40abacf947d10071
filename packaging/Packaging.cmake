# Installation layout and the Debian package (cpack -G DEB). Included from the top-level
# CMakeLists.txt after the targets exist; `cmake --install build/release --prefix DIR` works for
# any DIR, and the package installs under /usr.
set(FLOWSCOPE_APP_ID org.flowscope.FlowScope)
set(CMAKE_INSTALL_DOCDIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/flowscope)
set(_linux ${PROJECT_SOURCE_DIR}/packaging/linux)

if(FLOWSCOPE_BUILD_GUI)
    install(FILES ${_linux}/${FLOWSCOPE_APP_ID}.desktop DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
    install(FILES ${_linux}/${FLOWSCOPE_APP_ID}.metainfo.xml DESTINATION ${CMAKE_INSTALL_DATADIR}/metainfo)
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/resources/icons/hicolor DESTINATION ${CMAKE_INSTALL_DATADIR}/icons)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${_linux}/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The shipped networks (core/ShippedModels finds them at BIN/../share/flowscope/models). The build
# tree gets the same layout through a link, so programs run from it find them too.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/resources/models/ DESTINATION ${CMAKE_INSTALL_DATADIR}/flowscope/models
        PATTERN README.md EXCLUDE)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/share/flowscope)
file(CREATE_LINK ${PROJECT_SOURCE_DIR}/resources/models ${CMAKE_BINARY_DIR}/share/flowscope/models SYMBOLIC)
install(FILES ${PROJECT_SOURCE_DIR}/resources/examples/export_bundle.py DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# Debian wants man pages and the changelog compressed, reproducibly (gzip -n: no name or time).
find_program(FLOWSCOPE_GZIP gzip)
set(_compressed)
set(_pages flowscope-cli.1 flowscope-bench.1)
if(FLOWSCOPE_BUILD_GUI)
    list(APPEND _pages flowscope.1)
endif()
foreach(_file ${_pages} changelog)
    set(_out ${CMAKE_CURRENT_BINARY_DIR}/packaging/${_file}.gz)
    add_custom_command(OUTPUT ${_out}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/packaging
        COMMAND sh -c "\"$1\" -9nc \"$2\" > \"$3\"" sh ${FLOWSCOPE_GZIP} ${_linux}/${_file} ${_out}
        DEPENDS ${_linux}/${_file} VERBATIM)
    list(APPEND _compressed ${_out})
    if(_file STREQUAL "changelog")
        install(FILES ${_out} DESTINATION ${CMAKE_INSTALL_DOCDIR})
    else()
        install(FILES ${_out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
    endif()
endforeach()
add_custom_target(flowscope_packaging_files ALL DEPENDS ${_compressed})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME flowscope)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "FlowScope")
set(CPACK_PACKAGE_CONTACT "FlowScope developers <developers@flowscope.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "laboratory for flow-matching and diffusion sampling")
# One line per description line: CPack indents them, but does not wrap.
set(CPACK_PACKAGE_DESCRIPTION "FlowScope shows how flow-matching and diffusion models turn noise into
images. Its engine integrates the probability-flow ODE step by step along
straight (rectified flow) and curved (diffusion) paths with many solvers and
schedules, and keeps every intermediate state. The desktop application shows
them live and measures path straightness and error; flowscope-cli samples and
sweeps from the command line. Users can sample their own PyTorch networks
exported as TorchScript.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies come from dpkg-shlibdeps; OpenBLAS is loaded by LibTorch at run time
# (about 30 times faster matrix products than the reference BLAS), so it is named explicitly.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libopenblas0-pthread")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "dataset-fashion-mnist")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)

if(FLOWSCOPE_PACKAGE_TEST AND BUILD_TESTING AND FLOWSCOPE_BUILD_GUI)
    add_test(NAME package_deb COMMAND ${PROJECT_SOURCE_DIR}/packaging/check-package.sh ${CMAKE_BINARY_DIR})
    set_tests_properties(package_deb PROPERTIES LABELS "package" TIMEOUT 900)
endif()
