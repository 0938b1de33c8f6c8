// A misspelt argument is refused with the list of accepted ones, before anything is opened.
withCinodeSession(cout: 2) { hosts ->
    report.body = [hosts: hosts]
}
