// The block opens a session, the body gets the nodes (as its argument and in its environment) and
// its result is the block's; the session ends after it.
withCinodeSession(count: 2, ver: '9-stream', arch: 'x86_64', lifetime: '1h') { hosts ->
    report.body = [
        hosts: hosts,
        env: sh(script: 'printf "%s|%s|%s" "$CINODE_HOSTS" "$CINODE_SSID" "$CINODE_ALIAS"', returnStdout: true),
    ]
    'the body result'
}
