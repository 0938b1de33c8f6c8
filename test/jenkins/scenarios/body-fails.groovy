// The body fails: the session still ends, and the body's failure is the block's.
withCinodeSession(count: 1) { hosts ->
    report.body = [hosts: hosts]
    error('the tests failed on ' + hosts[0])
}
