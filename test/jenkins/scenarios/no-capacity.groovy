// Every aarch64 node is taken (by the test): no body, and the session opened for it is ended.
withCinodeSession(count: 1, ver: '9-stream', arch: 'aarch64', flavor: 'tiny', timeout: '1s') { hosts ->
    report.body = [hosts: hosts]
}
