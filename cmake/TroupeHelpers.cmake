# troupe_library(NAME SOURCES ... DEPS ...): a static library of ours, with the house options.
function(troupe_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_link_libraries(${name} PUBLIC troupe_options ${ARG_DEPS})
endfunction()

# troupe_test(NAME SOURCES ... DEPS ... [LABELS ...] [FIXTURES ...] [TIMEOUT s] [EXACT]): one
# GoogleTest executable, one ctest entry; FIXTURES names ctest fixtures it needs (e.g.
# reference_models). Tests find fetched test data, the source tree and Debian's python through
# the environment. EXACT: the test asserts token-exact equivalences between runs that put
# different numbers of rows through the matmuls (batched = alone, speculative = plain,
# chunked = unchunked); those hold on the f32 reference path, whose result for a row does not
# depend on the rows beside it, so the test runs with TROUPE_PRECISION=f32. The fast path keeps
# its accuracy contract (kernels/cpu/matmul.hpp) but not bitwise batch invariance.
function(troupe_test name)
  cmake_parse_arguments(ARG "EXACT" "TIMEOUT" "SOURCES;DEPS;LABELS;FIXTURES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE troupe_options ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
    FIXTURES_REQUIRED "${ARG_FIXTURES}"
    ENVIRONMENT "TROUPE_TEST_DATA=${TROUPE_TEST_DATA};TROUPE_SOURCE_DIR=${PROJECT_SOURCE_DIR};TROUPE_BUILD_DIR=${PROJECT_BINARY_DIR};TROUPE_PYTHON=${TROUPE_PYTHON}")
  if(ARG_EXACT)
    set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT "TROUPE_PRECISION=f32")
  endif()
endfunction()

# troupe_test_variant(BASE NAME ENV ...): runs test BASE again as NAME with extra environment
# (e.g. TROUPE_ISA=generic to prove a kernel variant), with BASE's fixtures.
function(troupe_test_variant base name)
  add_test(NAME ${name} COMMAND ${base})
  get_test_property(${base} FIXTURES_REQUIRED fixtures)
  get_test_property(${base} ENVIRONMENT env)
  set_tests_properties(${name} PROPERTIES TIMEOUT 600 FIXTURES_REQUIRED "${fixtures}"
                       ENVIRONMENT "${env};${ARGN}")
endfunction()

# troupe_embed(TARGET NAME FILE): compiles the bytes of FILE into TARGET as
# `troupe::assets::NAME` (a std::string_view; declare it `extern const std::string_view NAME;`
# where it is used). Editing FILE rebuilds it. For the status page and the plot script.
function(troupe_embed target name file)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_${name}.cpp)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DIN=${file} -DOUT=${out} -DNAME=${name} -P ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    DEPENDS ${file} ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    COMMENT "Embedding ${file}")
  target_sources(${target} PRIVATE ${out})
endfunction()
