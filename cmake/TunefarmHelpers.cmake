# Shared build settings for every tunefarm target.
function(tunefarm_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(TUNEFARM_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # GCC 12 at -O3 reports -Wrestrict inside libstdc++'s own std::string
  # operator+ (GCC PR 105329), a false positive that no caller can avoid.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
endfunction()

# tunefarm_add_library(<name> SOURCES ... DEPS ...): library `tunefarm_<name>`
# with alias `tunefarm::<name>` and public headers in <part>/include.
function(tunefarm_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(tunefarm_${name} STATIC ${ARG_SOURCES})
  add_library(tunefarm::${name} ALIAS tunefarm_${name})
  target_include_directories(tunefarm_${name}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(tunefarm_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  set_target_properties(tunefarm_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  tunefarm_target_defaults(tunefarm_${name})
endfunction()

# tunefarm_add_test(<name> SOURCES ... DEPS ... [LABELS ...]): one gtest binary
# registered with CTest. Tests never depend on the working directory: anything
# they need arrives through compile definitions or environment variables.
function(tunefarm_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  tunefarm_target_defaults(${name})
  include(GoogleTest)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
