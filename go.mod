module github.com/iu-engine/iu

go 1.26.8

require gopkg.in/yaml.v3 v3.0.1

require pgregory.net/rapid v1.3.0
