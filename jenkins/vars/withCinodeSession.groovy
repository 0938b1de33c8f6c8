import io.cinode.jenkins.CinodeCli

/**
 * withCinodeSession(count: 2, ver: '9-stream') { hosts -> ... }: a cinode session for the block.
 * See withCinodeSession.txt and docs/jenkins.md.
 */
def call(Closure body) {
    return call([:], body)
}

def call(Map args, Closure body) {
    String step = 'withCinodeSession'
    CinodeCli cli = CinodeCli.forStep(this, step, args)
    if (args.heartbeat != null) {
        // Session heartbeats are not in the cinode server yet: refuse rather than pretend.
        error("${step}: heartbeat is not supported by this server version yet; leave it out (the session's lifetime ends a session whose build is gone)")
    }
    String alias = CinodeCli.aliasOf(this, step, args)
    String count = CinodeCli.countOf(this, step, args)

    String ssid = cli.openSession(alias, args.lifetime, null)
    def result = null
    try {
        List<String> hosts = cli.getNodes(alias, count, args)
        echo("${step}: session ${alias} (${ssid}) has ${hosts.join(' ')}")
        withEnv(["CINODE_HOSTS=${hosts.join(' ')}", "CINODE_SSID=${ssid}", "CINODE_ALIAS=${alias}"]) {
            result = body.call(hosts)
        }
    } finally {
        // Success, failure or abort: the session ends here, and a failure to end it only warns.
        cli.endSessionOrWarn(alias, args.doneTimeout ?: '2m')
    }
    return result
}
