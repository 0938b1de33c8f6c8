/**
 * Runs a pipeline scenario (test/jenkins/scenarios/*.groovy) against the library in jenkins/ the way
 * Jenkins would load it, with the pipeline steps the library uses bound as fakes that behave like
 * Jenkins' own: `sh` writes the script to a file and really runs it with `bash -xe` in the
 * workspace, withEnv/withCredentials scope variables, `error` throws an AbortException.
 * Groovy 2.4 (the version Jenkins bundles); driven by test/jenkins.test.ts.
 *
 * Usage: groovy -cp jenkins/src harness.groovy SCENARIO REPORT.json
 * Environment: CINODE_TEST_LIBRARY (the library folder), CINODE_TEST_WORKSPACE (the workspace),
 * CINODE_TEST_CREDENTIALS (a Secret text as id=secret). The CINODE_TEST_* variables are kept out
 * of the pipeline's env; every other variable is the build's environment (CINODE_URL, BUILD_TAG...).
 */
import groovy.json.JsonOutput

/** What `error` and a failing `sh` throw in Jenkins (hudson.AbortException). */
class AbortException extends IOException {
    AbortException(String message) { super(message) }
}

/** The pipeline's `env`: the build's variables, with withEnv/withCredentials layers over them. */
class PipelineEnv extends GroovyObjectSupport {
    final Map<String, String> base
    final List<Map<String, String>> layers = []

    PipelineEnv(Map<String, String> base) { this.base = base }

    Map<String, String> effective() {
        Map<String, String> all = new LinkedHashMap<>(base)
        for (Map<String, String> layer in layers) all.putAll(layer)
        return all
    }

    Object getProperty(String name) { effective()[name] }

    void setProperty(String name, Object value) { base[name] = value?.toString() }

    def with(Map<String, String> layer, Closure body) {
        layers.add(layer)
        try {
            return body.call()
        } finally {
            layers.remove(layers.size() - 1)
        }
    }
}

def (scenarioPath, reportPath) = args as List
File library = new File(System.getenv('CINODE_TEST_LIBRARY'))
File workspace = new File(System.getenv('CINODE_TEST_WORKSPACE'))
Map<String, String> credentials = [:]
(System.getenv('CINODE_TEST_CREDENTIALS') ?: '').split(',').each { entry ->
    if (entry) credentials[entry.substring(0, entry.indexOf('='))] = entry.substring(entry.indexOf('=') + 1)
}
Map<String, String> buildEnv = System.getenv().findAll { k, v -> !k.startsWith('CINODE_TEST_') }
buildEnv.WORKSPACE = workspace.path

def report = [scripts: [], log: [], steps: [], outcome: null, error: null, result: null]
def env = new PipelineEnv(new LinkedHashMap(buildEnv))
def binding = new Binding()
def log = { String line -> report.log << line; System.err.println(line) }
def inWorkspace = { String path -> path.startsWith('/') ? new File(path) : new File(workspace, path) }

binding.env = env
binding.report = report
binding.echo = { String message -> report.steps << 'echo'; log(message.toString()) }
binding.error = { String message -> report.steps << 'error'; throw new AbortException(message.toString()) }
binding.isUnix = { -> report.steps << 'isUnix'; true }
binding.string = { Map spec -> [kind: 'string'] + spec }
binding.withEnv = { List<String> vars, Closure body ->
    report.steps << 'withEnv'
    Map<String, String> layer = [:]
    vars.each { String v -> layer[v.substring(0, v.indexOf('='))] = v.substring(v.indexOf('=') + 1) }
    env.with(layer, body)
}
binding.withCredentials = { List bindings, Closure body ->
    report.steps << 'withCredentials'
    Map<String, String> layer = [:]
    bindings.each { Map b ->
        if (b.kind != 'string') throw new AbortException("the harness binds only string(...) credentials, not ${b}")
        if (!credentials.containsKey(b.credentialsId)) throw new AbortException("Could not find credentials entry with ID '${b.credentialsId}'")
        layer[b.variable] = credentials[b.credentialsId]
    }
    env.with(layer, body)
}
binding.libraryResource = { String path ->
    report.steps << 'libraryResource'
    File file = new File(library, "resources/${path}")
    if (!file.isFile()) throw new AbortException("No such library resource ${path} could be found.")
    file.getText('UTF-8')
}
binding.writeFile = { Map spec ->
    report.steps << 'writeFile'
    File file = inWorkspace(spec.file.toString())
    file.parentFile.mkdirs()
    file.setText(spec.text.toString(), 'UTF-8')
}
binding.readFile = { spec ->
    report.steps << 'readFile'
    inWorkspace((spec instanceof Map ? spec.file : spec).toString()).getText('UTF-8')
}
binding.fileExists = { String path -> report.steps << 'fileExists'; inWorkspace(path).exists() }
binding.sh = { spec ->
    report.steps << 'sh'
    Map options = spec instanceof Map ? spec : [script: spec]
    String script = options.script.toString()
    report.scripts << script
    File dir = new File(workspace.path + '@tmp/durable')
    dir.mkdirs()
    File file = File.createTempFile('script', '.sh', dir)
    file.text = script
    def builder = new ProcessBuilder('bash', '-xe', file.path).directory(workspace)
    builder.environment().clear()
    builder.environment().putAll(env.effective())
    Process process = builder.start()
    // Byte streams: the output exactly as the script wrote it (returnStdout does not trim).
    def stdout = new ByteArrayOutputStream()
    def stderr = new ByteArrayOutputStream()
    process.waitForProcessOutput(stdout, stderr)
    int code = process.waitFor()
    file.delete()
    if (stderr.size() > 0) log(stderr.toString('UTF-8'))
    if (!options.returnStdout && stdout.size() > 0) log(stdout.toString('UTF-8'))
    if (options.returnStatus) return code
    if (code != 0) throw new AbortException("script returned exit code ${code}")
    return options.returnStdout ? stdout.toString('UTF-8') : null
}

// The library, loaded as Jenkins loads a shared library: src/ on the class path (groovy -cp), each
// vars/NAME.groovy a global variable NAME; a variable with call() is invoked as a step.
def shell = new GroovyShell(this.class.classLoader, binding)
new File(library, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.each { File file ->
    String name = file.name - '.groovy'
    Script global = shell.parse(file)
    global.binding = binding
    if (global.metaClass.respondsTo(global, 'call')) {
        binding.setVariable(name, { Object... arguments -> global.invokeMethod('call', arguments) })
    } else {
        binding.setVariable(name, global)
    }
}

try {
    report.result = shell.evaluate(new File(scenarioPath))
    report.outcome = 'success'
} catch (Throwable e) {
    report.outcome = 'failure'
    report.error = [type: e.class.name, message: e.message]
}
new File(reportPath).setText(JsonOutput.toJson(report), 'UTF-8')
