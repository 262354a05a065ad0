# Writes a help2man include file with the --help of every srl subcommand
# (cmake -DSRL=PATH -DOUT=FILE -P SrlManCommands.cmake), so that srl(1)
# documents them all.
execute_process(COMMAND ${SRL} --help OUTPUT_VARIABLE top RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SRL} --help failed")
endif()
# The subcommands: the lines after "Subcommands:", first word each.
string(REGEX REPLACE ".*Subcommands:\n" "" listing "${top}")
string(REGEX MATCHALL "\n?  [a-z]+ " words "${listing}")
set(text "[COMMANDS]\n")
foreach(w ${words})
  string(STRIP "${w}" cmd)
  execute_process(COMMAND ${SRL} ${cmd} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${SRL} ${cmd} --help failed")
  endif()
  # roff: a leading dot or quote would be a request; backslashes escape.
  string(REPLACE "\\" "\\e" help "${help}")
  string(REGEX REPLACE "\n([.'])" "\n\\\\&\\1" help "\n${help}")
  string(APPEND text ".SS srl ${cmd}\n.nf${help}.fi\n")
endforeach()
file(WRITE ${OUT} "${text}")
