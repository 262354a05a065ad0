# What `cmake --install` puts in place besides the programs (README.md,
# "Installation"): man pages made from the programs' own --help, the
# systemd unit with the installed paths, the documentation and examples,
# and the group whose members may use controld.
include(GNUInstallDirs)

# Man pages: help2man runs each program for its --help and --version; srl's
# page also holds every subcommand's --help (cmake/SrlManCommands.cmake).
find_program(HELP2MAN help2man)
if(HELP2MAN)
  set(SRL_MAN_DIR ${CMAKE_BINARY_DIR}/man)
  set(pages)
  foreach(entry "srl|1|run SRL requests on this machine's packet processing spaces"
                "srlc|1|compile SRL requests into DAGs of filters"
                "controld|8|the srl control daemon")
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 prog)
    list(GET parts 1 section)
    list(GET parts 2 summary)
    set(page ${SRL_MAN_DIR}/${prog}.${section})
    set(include_args)
    set(extra_deps)
    if(prog STREQUAL "srl")
      set(include_args --include=${SRL_MAN_DIR}/srl-commands.h2m)
      add_custom_command(
        OUTPUT ${SRL_MAN_DIR}/srl-commands.h2m
        COMMAND ${CMAKE_COMMAND} -DSRL=$<TARGET_FILE:srl> -DOUT=${SRL_MAN_DIR}/srl-commands.h2m
                -P ${PROJECT_SOURCE_DIR}/cmake/SrlManCommands.cmake
        DEPENDS srl srl_daemon_cli ${PROJECT_SOURCE_DIR}/cmake/SrlManCommands.cmake
        COMMENT "srl: every subcommand's --help for the man page"
      VERBATIM)
      set(extra_deps ${SRL_MAN_DIR}/srl-commands.h2m)
    endif()
    add_custom_command(
      OUTPUT ${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${SRL_MAN_DIR}
      COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=${section}
              "--name=${summary}" ${include_args} --output=${page} $<TARGET_FILE:${prog}>
      DEPENDS ${prog} ${extra_deps}
      COMMENT "man page ${prog}(${section})"
      VERBATIM)
    list(APPEND pages ${page})
    install(FILES ${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(srl_man ALL DEPENDS ${pages})
else()
  message(STATUS "help2man not found: no man pages (scripts/setup installs it)")
endif()

configure_file(${PROJECT_SOURCE_DIR}/controld/controld.service.in
               ${CMAKE_BINARY_DIR}/controld.service @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/controld.service
        DESTINATION ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# The group controld lets use its socket: made when installing for real
# (as root, no DESTDIR), left alone when staging a package or a test tree.
install(CODE [[
  if("$ENV{DESTDIR}" STREQUAL "")
    execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(uid STREQUAL "0")
      execute_process(COMMAND sh -c "getent group srl >/dev/null || groupadd --system srl"
                      RESULT_VARIABLE rc)
      if(rc EQUAL 0)
        message(STATUS "Group srl: present (its members may use controld's socket)")
      else()
        message(WARNING "could not create group srl: only root can use controld's socket")
      endif()
    else()
      message(STATUS "Group srl: not made (not root); as root: groupadd --system srl")
    endif()
  endif()
]])
