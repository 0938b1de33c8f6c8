// Heartbeats are not in the server yet: the argument is refused before anything is opened.
withCinodeSession(count: 1, heartbeat: '5m') { hosts ->
    report.body = [hosts: hosts]
}
