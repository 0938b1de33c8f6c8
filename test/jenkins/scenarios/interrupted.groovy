// The build is aborted while the body runs (Jenkins throws FlowInterruptedException, an
// InterruptedException, into it): the session still ends, and the interrupt goes on.
withCinodeSession(count: 1) { hosts ->
    report.body = [hosts: hosts]
    throw new InterruptedException('Aborted by user')
}
