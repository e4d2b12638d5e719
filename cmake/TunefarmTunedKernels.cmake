# tunefarm_add_tuned_kernels(<target> DEVICE <key> WORKLOADS <file>
#                            [DATABASE <path> | SERVER <host:port>]
#                            [PREFIX <name>] [STRICT])
#
# Adds to <target> a C kernel per workload listed in <file> (one per line,
# '#' comments), generated at build time by
# `tunefarm export --format library` from the best records of device <key>
# (falling back to another device of the same architecture family, then to
# the template's default config), and the header <prefix>_kernels.h
# (default prefix: tunefarm) on <target>'s include path. Each kernel is
# compiled with the flags it was tuned with. The kernels are regenerated
# when the workload file or the database file changes (with SERVER, only
# when the workload file does); the project is reconfigured when the
# workload file changes. With STRICT the build fails when a workload was
# not tuned on <key>. Without DATABASE or SERVER: the default tuning log
# ($TUNEFARM_DB, else $XDG_DATA_HOME/tunefarm/tunefarm.db, else
# ~/.local/share/tunefarm/tunefarm.db).
function(tunefarm_add_tuned_kernels target)
  cmake_parse_arguments(TF "STRICT" "DEVICE;WORKLOADS;DATABASE;SERVER;PREFIX" "" ${ARGN})
  if(TF_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tunefarm_add_tuned_kernels: unknown arguments ${TF_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET ${target})
    message(FATAL_ERROR "tunefarm_add_tuned_kernels: ${target} is not a target")
  endif()
  if(NOT TF_DEVICE OR NOT TF_WORKLOADS)
    message(FATAL_ERROR "tunefarm_add_tuned_kernels: DEVICE and WORKLOADS are required")
  endif()
  if(TF_DATABASE AND TF_SERVER)
    message(FATAL_ERROR "tunefarm_add_tuned_kernels: give DATABASE or SERVER, not both")
  endif()
  if(NOT TF_PREFIX)
    set(TF_PREFIX tunefarm)
  endif()
  get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if(NOT "C" IN_LIST languages)
    enable_language(C)
  endif()

  get_filename_component(workloads "${TF_WORKLOADS}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${workloads}")
    message(FATAL_ERROR "tunefarm_add_tuned_kernels: no workload file ${workloads}")
  endif()
  # The generated file names depend on how many workloads there are.
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${workloads}")
  file(STRINGS "${workloads}" lines)
  set(count 0)
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "#.*" "" line "${line}")
    string(STRIP "${line}" line)
    if(NOT line STREQUAL "")
      math(EXPR count "${count} + 1")
    endif()
  endforeach()
  if(count EQUAL 0)
    message(FATAL_ERROR "tunefarm_add_tuned_kernels: ${workloads} lists no workloads")
  endif()

  set(dir "${CMAKE_CURRENT_BINARY_DIR}/tunefarm_kernels/${target}")
  set(header "${dir}/${TF_PREFIX}_kernels.h")
  set(sources "${dir}/${TF_PREFIX}_dispatch.c")
  set(outputs "${header}" "${dir}/${TF_PREFIX}_dispatch.c")
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    list(APPEND sources "${dir}/kernel_${i}.c")
    list(APPEND outputs "${dir}/kernel_${i}.c" "${dir}/kernel_${i}.flags")
    set_source_files_properties("${dir}/kernel_${i}.c" PROPERTIES
      COMPILE_OPTIONS "@${dir}/kernel_${i}.flags" OBJECT_DEPENDS "${dir}/kernel_${i}.flags")
  endforeach()

  set(command $<TARGET_FILE:tunefarm::tunefarm> export --format library --device "${TF_DEVICE}"
      --workloads "${workloads}" -o "${dir}" --prefix "${TF_PREFIX}")
  set(depends "${workloads}" $<TARGET_FILE:tunefarm::tunefarm>)
  if(TF_SERVER)
    list(APPEND command --server "${TF_SERVER}")
  else()
    if(TF_DATABASE)
      get_filename_component(db "${TF_DATABASE}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    elseif(DEFINED ENV{TUNEFARM_DB})
      set(db "$ENV{TUNEFARM_DB}")
    elseif(DEFINED ENV{XDG_DATA_HOME})
      set(db "$ENV{XDG_DATA_HOME}/tunefarm/tunefarm.db")
    else()
      set(db "$ENV{HOME}/.local/share/tunefarm/tunefarm.db")
    endif()
    list(APPEND command --db "${db}")
    list(APPEND depends "${db}")
  endif()
  if(TF_STRICT)
    list(APPEND command --strict)
  endif()
  add_custom_command(OUTPUT ${outputs}
    COMMAND ${command}
    DEPENDS ${depends}
    COMMENT "tunefarm: generating ${count} kernel(s) for ${TF_DEVICE}"
    VERBATIM)
  target_sources(${target} PRIVATE ${sources} "${header}")
  target_include_directories(${target} PRIVATE "${dir}")
  # Kernels tuned with several threads use OpenMP.
  find_package(OpenMP COMPONENTS C QUIET)
  if(OpenMP_C_FOUND)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_C)
  endif()
endfunction()
