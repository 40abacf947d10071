# The front ends' one door to the engine: files under ui/ (and app/cli/) may include core/api/ (the
# facade and its plain types) and core/media/'s torch-free headers, and nothing else of core/ but
# the torch-free core/io/ headers named in ALLOWED_IO (the CLI's file writing). Run as
#   cmake -DDIRECTORY=<folder> [-DALLOWED_IO=A.h,B.h] [-DSTAMP=<file>] -P CheckEngineIncludes.cmake
# It fails, naming each file and header, when a file breaks the rule; it writes STAMP when none does.
cmake_minimum_required(VERSION 3.20)
string(REPLACE "," ";" ALLOWED_IO "${ALLOWED_IO}")
set(allowed_media ImageFolderLoader.h ImageWriter.h VideoExport.h)
file(GLOB_RECURSE sources "${DIRECTORY}/*.h" "${DIRECTORY}/*.cpp")
set(violations "")
foreach(source IN LISTS sources)
    file(STRINGS "${source}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]core/")
    foreach(line IN LISTS lines)
        string(REGEX MATCH "core/[^\">]*" header "${line}")
        if(header MATCHES "^core/api/[^/]+\\.h$")
            continue()
        endif()
        if(header MATCHES "^core/media/([^/]+)$" AND CMAKE_MATCH_1 IN_LIST allowed_media)
            continue()
        endif()
        if(header MATCHES "^core/io/([^/]+)$" AND CMAKE_MATCH_1 IN_LIST ALLOWED_IO)
            continue()
        endif()
        string(APPEND violations "\n  ${source}: ${header}")
    endforeach()
endforeach()
if(violations)
    list(JOIN allowed_media ", " media)
    message(FATAL_ERROR "${DIRECTORY} may include only core/api/ (and core/media/'s ${media}); "
                        "reach the engine through core/api/Engine.h instead of:${violations}")
endif()
if(STAMP)
    file(TOUCH "${STAMP}")
endif()
